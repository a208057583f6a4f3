using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
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
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        var dll = Path.Combine(AppContext.BaseDirectory, "RecurrentGemma.Server.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" --Urls=http://127.0.0.1:{port} --Api:ShutdownGraceSeconds=1 --Logs:Format=json")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory,
        };
        using var server = Process.Start(psi)!;
        var log = new System.Text.StringBuilder();
        server.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        try
        {
            for (int i = 0; ; i++)
            {
                try { if ((await http.GetAsync("/health/ready")).IsSuccessStatusCode) break; } catch (HttpRequestException) { }
                Assert.True(i < 300, "the server did not become ready");
                await Task.Delay(100);
            }
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
            Process.Start("kill", $"-TERM {server.Id}")!.WaitForExit();
            await Task.Delay(200);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/health/ready")).StatusCode);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/v1/models")).StatusCode);
            Assert.EndsWith("data: [DONE]\n\n", await body);
            Assert.True(server.WaitForExit(20_000), "the server did not exit");
            lock (log) Assert.DoesNotContain("\"@l\":\"Error\",\"@mt\":\"Request", log.ToString());
            // libgomp's spin count was set before libtorch loaded (Model/OpenMpTuning.cs), unless the environment chose one.
            if (Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") is null && Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is null
                && Environment.GetEnvironmentVariable("RGEMMA_GOMP_SPINCOUNT") is null)
                lock (log) Assert.Contains("\"OpenMp\":\"spin count 10000 (set at start-up)\"", log.ToString());
        }
        finally
        {
            if (!server.HasExited) server.Kill(true);
        }
    }
}
