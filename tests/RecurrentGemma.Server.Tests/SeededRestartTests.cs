using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// A seeded sampled request gives the same text alone, in a batch of 8 mixed greedy and sampled
/// requests, and from a restarted server process: its random numbers depend only on its seed and
/// how many tokens it has drawn (issue #9's "done when").
/// </summary>
public class SeededRestartTests
{
    const string Seeded = """{"messages":[{"role":"user","content":"tell me a story"}],"temperature":1,"seed":4242,"max_tokens":24,"logit_bias":{"1":-100,"107":-100}}""";

    sealed class ServerProcess : IAsyncDisposable
    {
        readonly Process _process;
        public HttpClient Http { get; }

        ServerProcess(Process process, HttpClient http) { _process = process; Http = http; }

        public static async Task<ServerProcess> StartAsync()
        {
            int port;
            using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
            var dll = Path.Combine(AppContext.BaseDirectory, "RecurrentGemma.Server.dll");
            var process = Process.Start(new ProcessStartInfo("dotnet", $"\"{dll}\" --Urls=http://127.0.0.1:{port} --Engine:MaxSlots=16 --Api:ShutdownGraceSeconds=1")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory,
            })!;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
            var server = new ServerProcess(process, http);
            for (int i = 0; ; i++)
            {
                try { if ((await http.GetAsync("/health/ready")).IsSuccessStatusCode) return server; } catch (HttpRequestException) { }
                if (i >= 300) { await server.DisposeAsync(); throw new TimeoutException("the server did not become ready"); }
                await Task.Delay(100);
            }
        }

        public async Task<string> Chat(string body)
        {
            var response = await Http.PostAsync("/v1/chat/completions", JsonBody(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            return JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            if (!_process.HasExited)
            {
                Process.Start("kill", $"-TERM {_process.Id}")!.WaitForExit();
                if (!_process.WaitForExit(20_000)) _process.Kill(true);
            }
            _process.Dispose();
        }
    }

    [Fact]
    public async Task The_same_seed_gives_the_same_text_alone_in_a_mixed_batch_and_after_a_restart()
    {
        if (!OperatingSystem.IsLinux()) return;
        string alone;
        await using (var first = await ServerProcess.StartAsync())
        {
            alone = await first.Chat(Seeded);
            Assert.False(string.IsNullOrEmpty(alone));
            var batch = Enumerable.Range(0, 7).Select(i => i % 2 == 0
                ? $$"""{"messages":[{"role":"user","content":"greedy {{i}}"}],"temperature":0,"max_tokens":24}"""
                : $$"""{"messages":[{"role":"user","content":"sampled {{i}}"}],"temperature":0.8,"top_p":0.9,"seed":{{i}},"max_tokens":24}""").ToList();
            batch.Insert(4, Seeded);
            var texts = await Task.WhenAll(batch.Select(first.Chat));
            Assert.Equal(alone, texts[4]);
            Assert.NotEqual(alone, await first.Chat(Seeded.Replace("4242", "4243")));   // the seed matters
        }
        await using var restarted = await ServerProcess.StartAsync();
        Assert.Equal(alone, await restarted.Chat(Seeded));
    }
}
