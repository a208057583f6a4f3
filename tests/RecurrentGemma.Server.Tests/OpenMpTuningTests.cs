using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using RecurrentGemma.Model;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// The server sets libgomp's spin count before libtorch loads (Model/OpenMpTuning.cs), and a
/// choice the operator made in the environment wins. Checked in the real process: only its first
/// statements run before libtorch loads, which the in-memory host never executes.
/// </summary>
public class OpenMpTuningTests
{
    // The default (the count set at start-up) is asserted in SigtermTests' server process, which
    // starts anyway: one more real server here, not two, keeps the parallel test load down.
    [Theory]
    [InlineData("123", null, "GOMP_SPINCOUNT=123 from the environment")]
    public async Task The_server_logs_the_spin_count_libgomp_will_read(string? spinCount, string? waitPolicy, string expected)
    {
        if (!OperatingSystem.IsLinux()) return;
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        var dll = Path.Combine(AppContext.BaseDirectory, "RecurrentGemma.Server.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" --Urls=http://127.0.0.1:{port}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var name in new[] { "GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "RGEMMA_GOMP_SPINCOUNT" }) psi.Environment.Remove(name);
        if (spinCount is not null) psi.Environment["GOMP_SPINCOUNT"] = spinCount;
        if (waitPolicy is not null) psi.Environment["OMP_WAIT_POLICY"] = waitPolicy;
        using var server = Process.Start(psi)!;
        var log = new System.Text.StringBuilder();
        server.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        server.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
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
            // Ready comes a moment before the start-up lines are logged and read back: wait for them.
            string text = "";
            for (int i = 0; i < 100 && !text.Contains("libtorch's OpenMP threads:"); i++)
            {
                lock (log) text = log.ToString();
                if (!text.Contains("libtorch's OpenMP threads:")) await Task.Delay(100);
            }
            Assert.Contains("libtorch's OpenMP threads: " + expected, text);
        }
        finally
        {
            if (!server.HasExited) server.Kill(true);
        }
    }
}
