using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace RecurrentGemma.Server.Tests;

/// <summary>A real redis-server (Debian's, installed by .ci/run) on a free loopback port, no persistence.</summary>
public sealed class RedisServer : IDisposable
{
    readonly Process _process;
    public int Port { get; }
    public string ConnectionString => $"127.0.0.1:{Port}";

    public RedisServer()
    {
        var exe = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("redis-server is not installed (.ci/run installs it: apt-get install redis-server)");
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); Port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        _process = Process.Start(new ProcessStartInfo(exe, $"--port {Port} --bind 127.0.0.1 --save \"\" --appendonly no --protected-mode no")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (true)
        {
            try { using var c = new TcpClient(); c.Connect(IPAddress.Loopback, Port); return; }
            catch (SocketException) when (DateTime.UtcNow < deadline) { Thread.Sleep(50); }
        }
    }

    /// <summary>Stops the server (a store that goes away).</summary>
    public void Stop()
    {
        if (!_process.HasExited) { _process.Kill(true); _process.WaitForExit(5000); }
    }

    public void Dispose()
    {
        Stop();
        _process.Dispose();
    }
}
