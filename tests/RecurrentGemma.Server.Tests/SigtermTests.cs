using System.Net;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>The real server process under a real SIGTERM (the in-memory host cannot show the
/// order in which Kestrel and the drain stop).</summary>
public class SigtermTests
{
    [Fact]
    public async Task Sigterm_drains_with_503s_ends_streams_cleanly_and_exits()
    {
        if (!OperatingSystem.IsLinux()) return;
        await using var server = await ServerProcess.StartAsync("--Api:ShutdownGraceSeconds=1 --Logs:Format=json");
        var http = server.Http;
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            // Long and heavy (top_logprobs: ~2 KB per event, megabytes in all) and not read
            // until after the SIGTERM: the socket fills, so the stream is surely still in
            // flight when the signal comes, however fast or loaded the machine is.
            Content = JsonBody("""{"messages":[{"role":"user","content":"go"}],"max_tokens":4000,"stream":true,"logprobs":true,"top_logprobs":20,"logit_bias":{"1":-100,"107":-100}}"""),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var body = response.Content.ReadAsStringAsync();
        await Task.Delay(300);
        // The server re-ran itself with one malloc arena (Model/MemoryTuning.cs) under the same
        // process id — the one the signal below goes to — unless the environment chose otherwise.
        if (Environment.GetEnvironmentVariable("GLIBC_TUNABLES") is null && Environment.GetEnvironmentVariable("RGEMMA_MALLOC_TUNING") is null)
        {
            var environ = (await File.ReadAllTextAsync($"/proc/{server.Process.Id}/environ")).Split('\0');
            Assert.Contains("GLIBC_TUNABLES=glibc.malloc.arena_max=1", environ);
            for (int i = 0; i < 100 && !server.Log.Contains("\"Malloc\":"); i++) await Task.Delay(100);
            Assert.Contains("\"Malloc\":\"heap kept (mmap off, no trim), one arena\"", server.Log);
        }
        server.Terminate();
        await Task.Delay(200);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/v1/models")).StatusCode);
        Assert.EndsWith("data: [DONE]\n\n", await body);
        Assert.True(server.Process.WaitForExit(20_000), "the server did not exit");
        Assert.DoesNotContain("\"@l\":\"Error\",\"@mt\":\"Request", server.Log);
        // Readiness off while loading and draining, and an API request refused meanwhile, are the
        // expected states, not errors: orchestrators probe every few seconds, and each probe
        // logged two errors before.
        var errors = server.Log.Split('\n').Where(l => l.Contains("\"@l\":\"Error\"")).ToList();
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        // libgomp's spin count was set before libtorch loaded (Model/OpenMpTuning.cs), unless the environment chose one.
        if (Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") is null && Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null
            && Environment.GetEnvironmentVariable("RGEMMA_GOMP_SPINCOUNT") is null)
            Assert.Contains("\"OpenMp\":\"spin count 10000 (set at start-up)\"", server.Log);
    }
}
