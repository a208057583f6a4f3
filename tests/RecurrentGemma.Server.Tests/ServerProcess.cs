using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// The real server binary in its own process on a free loopback port, its output kept: for what
/// the in-memory host cannot show (signals, restarts, what runs before the host is built).
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    readonly StringBuilder _log = new();
    public Process Process { get; }
    public HttpClient Http { get; }

    ServerProcess(Process process, HttpClient http) { Process = process; Http = http; }

    /// <summary>Everything the process wrote so far (stdout and stderr).</summary>
    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary>Starts a server whose model load must fail; returns once /health/ready says Unhealthy.</summary>
    public static Task<ServerProcess> StartFailedAsync(string arguments, int seconds = 60) => StartAsync(arguments, null, seconds, expectUnhealthy: true);

    /// <summary>Starts the demo-model server and returns once /health/ready answers 200.</summary>
    /// <param name="arguments">extra command-line settings, e.g. "--Engine:MaxSlots=16"</param>
    /// <param name="environment">variables to set (a null value removes one)</param>
    /// <param name="readySeconds">how long the start may take (a start that times every kernel decision while the other tests run needs more than 30 s)</param>
    /// <param name="expectUnhealthy">wait for a failed load (readiness "Unhealthy") instead</param>
    public static async Task<ServerProcess> StartAsync(string arguments = "", IReadOnlyDictionary<string, string?>? environment = null, int readySeconds = 30,
        bool expectUnhealthy = false)
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        var dll = Path.Combine(AppContext.BaseDirectory, "RecurrentGemma.Server.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" --Urls=http://127.0.0.1:{port} {arguments}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory,
        };
        psi.Environment["Model__KernelChoices"] = "off";   // nothing kept in the user's cache; an argument overrides it
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) psi.Environment.Remove(name);
            else psi.Environment[name] = value;
        }
        var process = Process.Start(psi)!;
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
        var server = new ServerProcess(process, http);
        process.OutputDataReceived += (_, e) => { lock (server._log) server._log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (server._log) server._log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (int i = 0; ; i++)
        {
            try
            {
                var ready = await http.GetAsync("/health/ready");
                if (!expectUnhealthy && ready.IsSuccessStatusCode) return server;
                if (expectUnhealthy && (await ready.Content.ReadAsStringAsync()).Contains("Unhealthy")) return server;
            }
            catch (HttpRequestException) { }
            if (i >= readySeconds * 10) { await server.DisposeAsync(); throw new TimeoutException($"the server did not become ready in {readySeconds} s:\n{server.Log}"); }
            await Task.Delay(100);
        }
    }

    /// <summary>Runs the server binary with these settings until it exits by itself (a start that
    /// must fail); its exit code and output. A process still running after the time is killed (-1).</summary>
    public static async Task<(int ExitCode, string Output)> RunToExitAsync(string arguments, int seconds = 60)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "RecurrentGemma.Server.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" --Urls=http://127.0.0.1:0 {arguments}")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory,
        };
        psi.Environment["Model__KernelChoices"] = "off";
        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try { await process.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException) { process.Kill(true); await process.WaitForExitAsync(); return (-1, await output + await errors); }
        return (process.ExitCode, await output + await errors);
    }

    /// <summary>Sends SIGTERM (the orchestrator's stop).</summary>
    public void Terminate() => Process.Start("kill", $"-TERM {Process.Id}")!.WaitForExit();

    public ValueTask DisposeAsync()
    {
        Http.Dispose();
        if (!Process.HasExited)
        {
            Terminate();
            if (!Process.WaitForExit(20_000)) Process.Kill(true);
        }
        Process.Dispose();
        return ValueTask.CompletedTask;
    }
}
