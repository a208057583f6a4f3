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
        Stat Median(Func<double> f) => Stat.Of(Enumerable.Range(0, repeats).Select(_ => f()).ToList());
        double Ms(Action a) { var c = Stopwatch.StartNew(); a(); return c.Elapsed.TotalMilliseconds; }

        var rows = new List<string>();
        // Host memory: the slot's tensors to plain bytes and back.
        // A demotion in steady state reuses the arrays of a state restored or written before it
        // (SnapshotBuffers); with reuse off, every demotion takes fresh memory.
        SlotSnapshot? snap = null;
        long pool = SnapshotBuffers.MaxPooledBytes;
        SnapshotBuffers.MaxPooledBytes = 0;
        var exportFresh = Median(() => { snap?.Dispose(); return Ms(() => snap = state.ExportSlot(0)); });
        SnapshotBuffers.MaxPooledBytes = pool;
        var export = Median(() => { snap?.Dispose(); return Ms(() => snap = state.ExportSlot(0)); });
        var import = Median(() => Ms(() => state.ImportSlot(0, snap!)));
        var source = new byte[bytes]; var target = new byte[bytes];
        Random.Shared.NextBytes(source);
        var memcpy = Median(() => Ms(() => source.AsSpan().CopyTo(target)));
        // A demoted state needs fresh memory; on VMs that hand freed pages back to the host its
        // first touch, not the copy, is most of the cost — so both raw figures are shown.
        var fresh = Median(() => Ms(() => source.AsSpan().CopyTo(new byte[bytes])));
        rows.Add(string.Create(ci, $"| host memory | {export} reusing buffers; {exportFresh} into fresh memory | {import} | {memcpy} into touched memory; {fresh} into fresh | {export.Median / memcpy.Median:F1}× (fresh: {exportFresh.Median / fresh.Median:F1}×) / {import.Median / memcpy.Median:F1}× | {1024.0 * 1024 * 1024 / bytes:F0} |"));
        progress.WriteLine($"[bench] host: export {export} (fresh memory {exportFresh}), import {import}, memcpy {memcpy}");

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
        sb.AppendLine(ci, $"One RecurrentGemma-2B state in bf16 ({bytes / 1048576.0:F1} MiB), on the CPU; the persistent record adds a JSON header and a SHA-256, and is written to a temporary file and renamed (no fsync; the raw write below does one). Medians of {repeats} with their ranges; {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}.");
        sb.AppendLine();
        sb.AppendLine("| tier | demote (store) | restore (load) | raw copy of the same bytes | ratio (store / load) | states per GiB |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var r in rows) sb.AppendLine(r);
        sb.AppendLine();
        sb.AppendLine();
        sb.AppendLine(RestoredTurnBenchmark.Run(progress));
        sb.AppendLine("Goal: each tier within 2× of the raw copy, write or read of the same bytes. A demotion reuses the arrays of states restored or written before it (steady state), so it is compared with a copy into touched memory; without reuse it is compared with a copy into fresh memory. A restore is compared with a copy into touched memory (the slot is). The persistent store also pays for building the record and its SHA-256.");
        return sb.ToString();
    }

    static string Persistent(string name, IStateBackend backend, SlotSnapshot snap, List<(long[], ScalarType)> layout, long bytes, int repeats,
        Func<Func<double>, Stat> median, Func<Action, double> ms, TextWriter progress, Func<(double Write, double Read, string What)> raw)
    {
        using var tier = new PersistentTier(backend, "bench", layout);
        tier.Scanned.Wait();
        int[] tokens = [2, 3, 4];
        var store = median(() => ms(() =>
        {
            long before = tier.Writes;
            tier.Save(new HostEntry(snap, tokens, "bench", "bench"));
            while (tier.Writes == before && tier.Errors == 0) Thread.SpinWait(100);
        }));
        var entry = tier.FindMatch([2, 3, 4, 5], "bench", "bench") ?? throw new InvalidOperationException($"{name}: the record was not found ({tier.Errors} errors)");
        var load = median(() => ms(() => tier.Load(entry)));
        var r = Enumerable.Range(0, repeats).Select(_ => raw()).ToList();
        var rw = Stat.Of(r.Select(x => x.Write).ToList());
        var rr = Stat.Of(r.Select(x => x.Read).ToList());
        progress.WriteLine($"[bench] {name}: store {store}, load {load}; raw {rw} / {rr}");
        return string.Create(CultureInfo.InvariantCulture, $"| {name} | {store} | {load} | {rw} / {rr} ({r[0].What}) | {store.Median / rw.Median:F1}× / {load.Median / rr.Median:F1}× | {1024.0 * 1024 * 1024 / bytes:F0} |");
    }

    /// <summary>A median with the range of its samples, printed as "12.3 ms (11.9–14.0)".</summary>
    public readonly record struct Stat(double Median, double Min, double Max)
    {
        public static Stat Of(List<double> xs)
        {
            var s = xs.Order().ToList();
            return new Stat(s[s.Count / 2], s[0], s[^1]);
        }

        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Median:F1} ms ({Min:F1}–{Max:F1})");
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

/// <summary>
/// Time to first token of turn 10 of a conversation whose first nine turns (1 000 tokens) are
/// parked: on the device, restored from host memory, restored from disk by a new engine — against
/// prefilling the whole transcript again. The "small" shape (hidden 1024, 12 layers), bf16.
/// </summary>
public static class RestoredTurnBenchmark
{
    public static string Run(TextWriter progress)
    {
        var config = Commands.BenchCommand.Small;
        using var model = new GriffinForCausalLM(config, ScalarType.BFloat16, CPU);
        RandomWeights.Initialize(model, 3);
        var random = new Random(11);
        int[] history = Enumerable.Range(0, 1000).Select(_ => 10 + random.Next(config.VocabSize - 20)).ToArray();
        int[] turn10 = [.. history, .. Enumerable.Range(0, 20).Select(_ => 10 + random.Next(config.VocabSize - 20))];
        GenerationRequest Request(int[] prompt, string session) => new()
        {
            PromptTokens = prompt, MaxNewTokens = 1, Sampling = SamplingParams.Greedy, SessionId = session,
        };
        (double Ms, int Cached) Ttft(EngineClient engine, GenerationRequest r)
        {
            var clock = Stopwatch.StartNew();
            var handle = engine.Submit(r);
            double first = 0;
            int cached = 0;
            foreach (var e in handle.ReadEventsAsync().ToBlockingEnumerable())
            {
                if (e is TokenEvent && first == 0) first = clock.Elapsed.TotalMilliseconds;
                if (e is UsageEvent u) cached = u.CachedTokens;
            }
            return (first, cached);
        }
        var rows = new List<(string What, List<double> Ms, int Cached)>();
        void Add(string what, double ms, int cached)
        {
            int at = rows.FindIndex(r => r.What == what);
            if (at < 0) rows.Add((what, [ms], cached));
            else rows[at].Ms.Add(ms);
        }
        var options = new EngineOptions { MaxSlots = 2, MaxRunningSequences = 1, CalibrateThreads = false };

        void With(EngineOptions o, Action<EngineClient> body)
        {
            var engine = new EngineClient(model, o);
            try { body(engine); }
            finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        }

        for (int repeat = 0; repeat < 3; repeat++) {
        With(options with { ParkFinishedStates = false }, plain =>
        {
            Ttft(plain, Request(turn10, "warm"));
            var (ms, cached) = Ttft(plain, Request(turn10, "c"));
            Add("full prefill of the transcript", ms, cached);
        });
        With(options, device =>
        {
            Ttft(device, Request(history, "c"));
            var (ms, cached) = Ttft(device, Request(turn10, "c"));
            Add("parked on the device", ms, cached);
        });
        With(options with { HostMemoryMiB = 256 }, host =>
        {
            Ttft(host, Request(history, "c"));
            Ttft(host, Request([.. history[..10], 1, 2, 3], "other-1"));   // two other conversations push it out of the pool
            Ttft(host, Request([.. history[..10], 4, 5, 6], "other-2"));
            var (ms, cached) = Ttft(host, Request(turn10, "c"));
            Add("restored from host memory", ms, cached);
        });
        var dir = Directory.CreateTempSubdirectory("rg-turn10-").FullName;
        try
        {
            var stored = options with { StorePath = dir, StateFingerprint = "bench" };
            With(stored, a => Ttft(a, Request(history, "c")));
            With(stored, b =>
            {
                b.StoreIndexed.Wait();
                var (ms, cached) = Ttft(b, Request(turn10, "c"));
                Add("restored from disk by a new engine", ms, cached);
            });
        }
        finally { Directory.Delete(dir, recursive: true); }
        }

        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("### Time to first token of turn 10");
        sb.AppendLine();
        sb.AppendLine(ci, $"The \"small\" shape (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, bf16, random weights); turns 1–9 are 1 000 tokens, turn 10 adds 20. Medians of 3 runs, each on fresh engines, with their ranges.");
        sb.AppendLine();
        sb.AppendLine("| turn 10's state | time to first token | prompt tokens reused |");
        sb.AppendLine("|---|---|---|");
        foreach (var (what, ms, cached) in rows) sb.AppendLine(ci, $"| {what} | {TierBenchmark.Stat.Of(ms)} | {cached} |");
        foreach (var (what, ms, cached) in rows) progress.WriteLine($"[bench] turn 10, {what}: {TierBenchmark.Stat.Of(ms)}, {cached} reused");
        return sb.ToString();
    }
}
