using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// The tiers of a parked 2B state (bf16): moving it to host memory and back, writing it to disk
/// and reading it back, and the same through Redis when a redis-server can be started — each
/// against the raw copy, write or SET of the same bytes. Medians of several repeats.
/// </summary>
public static class TierBenchmark
{
    public static string Run(int repeats, TextWriter progress)
    {
        var config = GriffinConfig.RecurrentGemma2B;
        var dtype = ScalarType.BFloat16;
        using var state = new GriffinState(config, 1, dtype, CPU);
        foreach (var t in state.AllTensors()) t.normal_();
        long bytes = state.BytesPerSlot;
        var layout = GriffinState.SlotLayout(config, dtype);
        var ci = CultureInfo.InvariantCulture;
        double Median(Func<double> f) => Enumerable.Range(0, repeats).Select(_ => f()).Order().ElementAt(repeats / 2);
        double Ms(Action a) { var c = Stopwatch.StartNew(); a(); return c.Elapsed.TotalMilliseconds; }

        var rows = new List<string>();
        // Host memory: the slot's tensors to plain bytes and back.
        SlotSnapshot? snap = null;
        double export = Median(() => Ms(() => snap = state.ExportSlot(0)));
        double import = Median(() => Ms(() => state.ImportSlot(0, snap!)));
        var source = new byte[bytes]; var target = new byte[bytes];
        Random.Shared.NextBytes(source);
        double memcpy = Median(() => Ms(() => source.AsSpan().CopyTo(target)));
        // A demoted state needs fresh memory; on VMs that hand freed pages back to the host its
        // first touch, not the copy, is most of the cost — so both raw figures are shown.
        double fresh = Median(() => Ms(() => source.AsSpan().CopyTo(new byte[bytes])));
        rows.Add(string.Create(ci, $"| host memory | {export:F1} ms | {import:F1} ms | {fresh:F1} ms into fresh memory, {memcpy:F1} ms into touched | {export / fresh:F1}× / {import / memcpy:F1}× | {1024.0 * 1024 * 1024 / bytes:F0} |"));
        progress.WriteLine($"[bench] host: export {export:F1} ms, import {import:F1} ms, memcpy {memcpy:F1} ms");

        // Disk: the tier's record (header, bytes, SHA-256; written atomically with fsync) vs a plain write + read.
        var dir = Directory.CreateTempSubdirectory("rg-tier-bench-").FullName;
        try
        {
            rows.Add(Persistent("disk", new FileStateBackend(dir), snap!, layout, bytes, repeats, Median, Ms, progress, () =>
            {
                var file = Path.Combine(dir, "raw.bin");
                double w = Ms(() => { using var f = new FileStream(file, FileMode.Create); f.Write(source); f.Flush(true); });
                double r = Ms(() => File.ReadAllBytes(file));
                return (w, r, "write+fsync / read");
            }));
            using var redis = StartRedis();
            if (redis.Process is null) rows.Add("| Redis | — | — | — | — | redis-server not found |");
            else
            {
                var backend = new RedisStateBackend(redis.Address);
                using var raw = StackExchange.Redis.ConnectionMultiplexer.Connect(redis.Address);
                var db = raw.GetDatabase();
                rows.Add(Persistent("Redis (loopback)", backend, snap!, layout, bytes, repeats, Median, Ms, progress, () =>
                {
                    double w = Ms(() => db.StringSet("raw", source));
                    double r = Ms(() => db.StringGet("raw"));
                    return (w, r, "SET / GET");
                }));
            }
        }
        finally { Directory.Delete(dir, recursive: true); }

        var sb = new StringBuilder();
        sb.AppendLine("## Tiered state store (issue #12): demote and restore a 2B state per tier");
        sb.AppendLine();
        sb.AppendLine(ci, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite tiers --repeats {repeats} --out docs/benchmarks.md`  ");
        sb.AppendLine(ci, $"One RecurrentGemma-2B state in bf16 ({bytes / 1048576.0:F1} MiB), on the CPU; the persistent record adds a JSON header and a SHA-256, and is written to a temporary file, fsynced and renamed. Medians of {repeats}; {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}.");
        sb.AppendLine();
        sb.AppendLine("| tier | demote (store) | restore (load) | raw copy of the same bytes | ratio (store / load) | states per GiB |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var r in rows) sb.AppendLine(r);
        sb.AppendLine();
        sb.AppendLine("Goal: each tier within 2× of the raw copy, write or read of the same bytes. A demotion is compared with a copy into fresh memory (it needs new memory); a restore with a copy into touched memory (the slot is). The persistent store also pays for building the record and its SHA-256.");
        return sb.ToString();
    }

    static string Persistent(string name, IStateBackend backend, SlotSnapshot snap, List<(long[], ScalarType)> layout, long bytes, int repeats,
        Func<Func<double>, double> median, Func<Action, double> ms, TextWriter progress, Func<(double Write, double Read, string What)> raw)
    {
        using var tier = new PersistentTier(backend, "bench", layout);
        tier.Scanned.Wait();
        int[] tokens = [2, 3, 4];
        double store = median(() => ms(() =>
        {
            long before = tier.Writes;
            tier.Save(new HostEntry(snap, tokens, "bench", "bench"));
            while (tier.Writes == before && tier.Errors == 0) Thread.SpinWait(100);
        }));
        var entry = tier.FindMatch([2, 3, 4, 5], "bench", "bench") ?? throw new InvalidOperationException($"{name}: the record was not found ({tier.Errors} errors)");
        double load = median(() => ms(() => tier.Load(entry)));
        var r = Enumerable.Range(0, repeats).Select(_ => raw()).ToList();
        double rw = r.Select(x => x.Write).Order().ElementAt(repeats / 2), rr = r.Select(x => x.Read).Order().ElementAt(repeats / 2);
        progress.WriteLine($"[bench] {name}: store {store:F1} ms, load {load:F1} ms; raw {rw:F1} / {rr:F1} ms");
        return string.Create(CultureInfo.InvariantCulture, $"| {name} | {store:F1} ms | {load:F1} ms | {rw:F1} / {rr:F1} ms ({r[0].What}) | {store / rw:F1}× / {load / rr:F1}× | {1024.0 * 1024 * 1024 / bytes:F0} |");
    }

    sealed record RedisProcess(Process? Process, string Address) : IDisposable
    {
        public void Dispose() { if (Process is { HasExited: false }) { Process.Kill(true); Process.WaitForExit(5000); } Process?.Dispose(); }
    }

    static RedisProcess StartRedis()
    {
        var exe = new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server" }.FirstOrDefault(File.Exists);
        if (exe is null) return new RedisProcess(null, "");
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0)) { probe.Start(); port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port; }
        var p = Process.Start(new ProcessStartInfo(exe, $"--port {port} --bind 127.0.0.1 --save \"\" --appendonly no") { RedirectStandardOutput = true, RedirectStandardError = true })!;
        for (int i = 0; i < 100; i++)
        {
            try { using var c = new System.Net.Sockets.TcpClient(); c.Connect(System.Net.IPAddress.Loopback, port); break; }
            catch (System.Net.Sockets.SocketException) { Thread.Sleep(50); }
        }
        return new RedisProcess(p, $"127.0.0.1:{port}");
    }
}
