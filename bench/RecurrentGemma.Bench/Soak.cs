using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Cli.Bench;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Bench;

/// <summary>
/// Soak: N client loops against the real server (demo model, Kestrel on loopback, this process)
/// for a given time, mixing streamed and plain chat and completions with random lengths, session
/// reuse, n > 1, clients that hang up mid-stream, tokenizer calls and bad requests. Reports
/// answers by status, unexpected errors, RSS and managed-heap drift after warm-up, and whether the
/// engine is back to idle at the end (no running sequence, no used slot, live tensors as at idle).
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --soak [--minutes 10] [--streams 8] [--out docs/benchmarks.md]
/// </summary>
public static class Soak
{
    sealed class Tally
    {
        public readonly Dictionary<string, int> ByStatus = new();
        public readonly List<string> Unexpected = [];
        public int Requests, Cancelled, Tokens;
        public void Count(string key) { lock (this) ByStatus[key] = ByStatus.GetValueOrDefault(key) + 1; }
        public void Fail(string what) { lock (this) { if (Unexpected.Count < 50) Unexpected.Add(what); else Unexpected[^1] = "… and more"; } }
    }

    static readonly string[] BadBodies =
    [
        "{not json", "", "[]", """{"messages":[null]}""", """{"messages":[{"role":"user","content":"\ud800"}]}""",
        """{"messages":[{"role":"user","content":"hi"}],"temperature":9}""", """{"prompt":[null]}""",
        """{"messages":[{"role":"user","content":"hi"}],"n":99}""", """{"prompt":"x","max_tokens":-4}""",
    ];

    public static async Task<string> RunAsync(double minutes, int streams, TextWriter progress)
    {
        await using var factory = new WebApplicationFactory<global::Program>().WithWebHostBuilder(b =>
        {
            b.UseContentRoot(AppContext.BaseDirectory);
            b.UseSetting("Urls", "http://127.0.0.1:0");
            b.UseSetting("Serilog:MinimumLevel:Default", "Warning");
            b.UseSetting("Serilog:MinimumLevel:Override:Microsoft.Hosting.Lifetime", "Warning");
        });
        factory.UseKestrel(0);
        factory.StartServer();
        var host = factory.Services.GetRequiredService<ModelHost>();
        await host.Loaded;
        using var http = factory.CreateClient();
        http.Timeout = TimeSpan.FromMinutes(2);
        var engine = host.Inference!.Engine;
        var engineOptions = factory.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<EngineOptions>>().Value;

        var tally = new Tally();
        var total = TimeSpan.FromMinutes(minutes);
        var warmup = TimeSpan.FromSeconds(Math.Min(60, total.TotalSeconds / 5));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var samples = new List<(double T, long Rss, long Heap)>();
        var sampler = Task.Run(async () =>
        {
            while (clock.Elapsed < total)
            {
                var sample = (clock.Elapsed.TotalSeconds, ProcessStats.Memory().Rss, GC.GetTotalMemory(false));
                lock (samples) samples.Add(sample);
                await Task.Delay(5000);
            }
        });
        var loops = Enumerable.Range(0, streams).Select(i => Task.Run(() => Loop(http, new Random(1000 + i), tally, clock, total))).ToArray();
        (long Rss, long Heap, long Tensors) atWarm = default;
        while (clock.Elapsed < warmup) await Task.Delay(200);
        atWarm = (ProcessStats.Memory().Rss, Heap(), engine.Snapshot.LiveTensorsOnEngineThread);
        long hostAtWarm = engine.Snapshot.HostBytes;
        progress.WriteLine($"[soak] warm after {warmup.TotalSeconds:F0} s: RSS {atWarm.Rss / 1048576.0:F0} MiB, heap {atWarm.Heap / 1048576.0:F1} MiB");
        // Steady state: the bounded caches hold what they may and memory has stopped climbing.
        // The host-memory tier, the largest cache (Sessions:HostMemoryMiB), fills at this traffic
        // in a minute or two, and the churn it then starts (each new parked state evicts an old
        // one) raises the GC's and the allocator's high-water marks for a while after. Steady:
        // the tier at 95 % of its budget and RSS up less than 1 % over the last minute. A leak
        // keeps climbing after that, and the verdict measures from there to the end. (Half the
        // run at the latest, so that at least half is measured.)
        long hostBudget = (long)engineOptions.HostMemoryMiB << 20;
        bool CachesFull() => hostBudget == 0 || engine.Snapshot.HostBytes >= hostBudget * 0.95;
        bool Settled()
        {
            lock (samples)
            {
                if (samples.Count == 0) return false;
                var now = samples[^1];
                var before = samples.LastOrDefault(x => x.T <= now.T - 60);
                return before.Rss > 0 && now.Rss - before.Rss < 0.01 * before.Rss;
            }
        }
        while (clock.Elapsed < total / 2 && !(CachesFull() && Settled())) await Task.Delay(1000);
        var steadyAt = clock.Elapsed;
        bool cachesFull = CachesFull(), settled = Settled();
        var atSteady = (Rss: ProcessStats.Memory().Rss, Heap: Heap(), Host: engine.Snapshot.HostBytes, Pool: SnapshotBuffers.PooledBytes);
        progress.WriteLine($"[soak] steady after {steadyAt.TotalMinutes:F1} min (host-memory tier {(cachesFull ? "full" : "not full")}, RSS {(settled ? "settled" : "still climbing")}): RSS {atSteady.Rss / 1048576.0:F0} MiB");
        while (clock.Elapsed < total)
        {
            await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, Math.Max(1, (total - clock.Elapsed).TotalSeconds))));
            progress.WriteLine($"[soak] {clock.Elapsed.TotalMinutes:F1} min: {tally.Requests} requests, {tally.Unexpected.Count} unexpected, RSS {ProcessStats.Memory().Rss / 1048576.0:F0} MiB");
        }
        await Task.WhenAll(loops);
        await sampler;

        // Idle: every sequence ended, no slot in use; parked conversations may stay (they are the cache).
        var idleBy = DateTime.UtcNow.AddSeconds(30);
        while ((engine.Snapshot.RunningSequences > 0 || engine.Snapshot.SlotsUsed > 0 || engine.Snapshot.QueuedRequests > 0) && DateTime.UtcNow < idleBy)
            await Task.Delay(50);
        var end = engine.Snapshot;
        var endRss = ProcessStats.Memory().Rss;
        var endHeap = Heap();
        var afterWarm = samples.Where(s => s.T >= warmup.TotalSeconds).ToList();
        // A leak keeps growing; a high-water mark (freed pages kept by the allocator) levels off.
        // The second half's drift tells them apart.
        var half = samples.Where(s => s.T >= total.TotalSeconds / 2).ToList();
        double secondHalfDrift = half.Count > 0 ? (endRss - half[0].Rss) / (double)half[0].Rss : 0;
        double rssDrift = (endRss - atWarm.Rss) / (double)atWarm.Rss;
        // Host memory is a cache that fills up to Sessions:HostMemoryMiB by design: drift net of it
        // is what a leak would show.
        long hostGrowth = end.HostBytes - hostAtWarm;
        double netDrift = (endRss - hostGrowth - atWarm.Rss) / (double)atWarm.Rss;
        double heapDrift = (endHeap - atWarm.Heap) / (double)atWarm.Heap;
        double steadyDrift = (endRss - atSteady.Rss) / (double)atSteady.Rss;
        var afterSteady = samples.Where(s => s.T >= steadyAt.TotalSeconds).ToList();

        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Soak (issue #10): mixed traffic for a fixed time, then back to idle");
        sb.AppendLine();
        sb.AppendLine(ci, $"Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --soak --minutes {minutes:0.##} --streams {streams} --out docs/benchmarks.md`  ");
        sb.AppendLine(ci, $"Demo model (embedded, random weights) on the CPU, real Kestrel socket on 127.0.0.1, server and clients in one process; {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}. Each client loop picks at random: a chat or completions request (streamed or not, 1–48 new tokens, n 1–2, half of them continuing a session), a stream it hangs up on after a few events, a tokenizer call, or a bad request (expected 4xx).");
        sb.AppendLine();
        sb.AppendLine("| measure | value |");
        sb.AppendLine("|---|---|");
        sb.AppendLine(ci, $"| duration / client loops | {clock.Elapsed.TotalMinutes:F1} min / {streams} |");
        sb.AppendLine(ci, $"| requests / streams hung up on / tokens generated (streams: events) | {tally.Requests} / {tally.Cancelled} / {tally.Tokens} |");
        sb.AppendLine(ci, $"| answers by status | {string.Join(", ", tally.ByStatus.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}: {kv.Value}"))} |");
        sb.AppendLine(ci, $"| **unexpected errors** | **{tally.Unexpected.Count}** |");
        sb.AppendLine(ci, $"| RSS after {warmup.TotalSeconds:F0} s warm-up → end | {atWarm.Rss / 1048576.0:F0} → {endRss / 1048576.0:F0} MiB ({Pct(rssDrift)}; range after warm-up {afterWarm.Min(s => s.Rss) / 1048576.0:F0}–{afterWarm.Max(s => s.Rss) / 1048576.0:F0} MiB) |");
        sb.AppendLine(ci, $"| parked states in host memory, {warmup.TotalSeconds:F0} s → steady → end | {hostAtWarm / 1048576.0:F1} → {atSteady.Host / 1048576.0:F1} → {end.HostBytes / 1048576.0:F1} MiB ({end.HostStates} states; a cache bounded by Sessions:HostMemoryMiB = {engineOptions.HostMemoryMiB}) |");
        sb.AppendLine(ci, $"| RSS drift from {warmup.TotalSeconds:F0} s, net of host-memory growth | {Pct(netDrift)} |");
        sb.AppendLine(ci, $"| **RSS from steady state ({steadyAt.TotalMinutes:F1} min: {(cachesFull && settled ? "host-memory tier at 95 % of its budget and RSS up < 1 % over a minute" : "half the run; " + (cachesFull ? "RSS still climbing" : "the host-memory tier never filled"))}) → end** | {atSteady.Rss / 1048576.0:F0} → {endRss / 1048576.0:F0} MiB (**{Pct(steadyDrift)}**; range {afterSteady.DefaultIfEmpty(samples[^1]).Min(s => s.Rss) / 1048576.0:F0}–{afterSteady.DefaultIfEmpty(samples[^1]).Max(s => s.Rss) / 1048576.0:F0} MiB) |");
        sb.AppendLine(ci, $"| snapshot buffer pool, steady → end | {atSteady.Pool / 1048576.0:F1} → {SnapshotBuffers.PooledBytes / 1048576.0:F1} MiB (bounded by {SnapshotBuffers.MaxPooledBytes / 1048576.0:F0} MiB) |");
        if (half.Count > 0)
            sb.AppendLine(ci, $"| RSS over the second half ({half[0].T / 60:F1} min → end) | {half[0].Rss / 1048576.0:F0} → {endRss / 1048576.0:F0} MiB ({Pct(secondHalfDrift)}) |");
        sb.AppendLine(ci, $"| malloc tuning (M_TRIM_THRESHOLD max: freed pages are kept) | {(RecurrentGemma.Model.MemoryTuning.Applied ? "on" : "off (RGEMMA_MALLOC_TUNING=0)")} |");
        sb.AppendLine(ci, $"| managed heap after a full GC, {warmup.TotalSeconds:F0} s → steady → end | {atWarm.Heap / 1048576.0:F1} → {atSteady.Heap / 1048576.0:F1} → {endHeap / 1048576.0:F1} MiB ({Pct(heapDrift)} from {warmup.TotalSeconds:F0} s, {Pct((endHeap - atSteady.Heap) / (double)atSteady.Heap)} from steady) |");
        sb.AppendLine(ci, $"| at the end: running / queued / slots used / parked / total | {end.RunningSequences} / {end.QueuedRequests} / {end.SlotsUsed} / {end.SlotsParked} / {end.SlotsTotal} |");
        sb.AppendLine(ci, $"| live tensors on the engine thread, warm → end | {atWarm.Tensors} → {end.LiveTensorsOnEngineThread} |");
        sb.AppendLine();
        bool ok = tally.Unexpected.Count == 0 && Math.Abs(steadyDrift) < 0.05 && end.RunningSequences == 0 && end.SlotsUsed == 0 && end.QueuedRequests == 0
            && end.LiveTensorsOnEngineThread == atWarm.Tensors;
        sb.AppendLine(ok
            ? "Verdict: **met** — no unexpected error, RSS drift under 5 % from the steady state (the bounded caches full, RSS settled) to the end, pool and tensors back to idle."
            : "Verdict: **not met** — see the rows above." + (tally.Unexpected.Count > 0 ? " Unexpected: " + string.Join("; ", tally.Unexpected.Take(10)) : ""));
        return sb.ToString();
    }

    /// <summary>A signed percentage, with no sign on what rounds to zero.</summary>
    static string Pct(double fraction)
    {
        double r = Math.Round(fraction * 100, 1);
        return r == 0 ? "0.0%" : r.ToString("+0.0;-0.0", CultureInfo.InvariantCulture) + "%";
    }

    static long Heap()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(true);
    }

    static async Task Loop(HttpClient http, Random random, Tally tally, System.Diagnostics.Stopwatch clock, TimeSpan total)
    {
        int turn = 0;
        while (clock.Elapsed < total)
        {
            Interlocked.Increment(ref tally.Requests);
            double pick = random.NextDouble();
            try
            {
                if (pick < 0.60) await Generate(http, random, tally, ++turn);
                else if (pick < 0.75) await HangUp(http, random, tally);
                else if (pick < 0.85) await Expect(http, tally, "/tokenize", """{"prompt":"how many tokens is this?"}""", ok: true);
                else await Expect(http, tally, random.Next(2) == 0 ? "/v1/chat/completions" : "/v1/completions", BadBodies[random.Next(BadBodies.Length)], ok: false);
            }
            catch (Exception e) { tally.Fail($"{e.GetType().Name}: {e.Message}"); }
        }
    }

    static readonly string[] Vocabulary = ["sea", "stone", "river", "light", "north", "quiet", "seven", "market"];

    static string Words(Random random, int n) => string.Join(' ', Enumerable.Range(0, n).Select(_ => Vocabulary[random.Next(Vocabulary.Length)]));

    static async Task Generate(HttpClient http, Random random, Tally tally, int turn)
    {
        bool chat = random.Next(2) == 0, stream = random.Next(2) == 0;
        int maxTokens = 1 + random.Next(48), n = random.Next(4) == 0 ? 2 : 1;
        string? session = random.Next(2) == 0 ? $"soak-{random.Next(6)}" : null;
        object body = chat
            ? new { messages = new[] { new { role = "user", content = Words(random, 3 + random.Next(60)) } }, max_tokens = maxTokens, n, stream, session_id = session, temperature = 0.8 }
            : new { prompt = Words(random, 3 + random.Next(200)), max_tokens = maxTokens, n, stream, session_id = session, temperature = 0.8 };
        using var content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        using var r = await http.PostAsync(chat ? "/v1/chat/completions" : "/v1/completions", content);
        tally.Count(((int)r.StatusCode).ToString(CultureInfo.InvariantCulture));
        var text = await r.Content.ReadAsStringAsync();
        if (r.StatusCode != HttpStatusCode.OK) { tally.Fail($"generate → {(int)r.StatusCode}: {Clip(text)}"); return; }
        if (text.Contains("\"error\"")) tally.Fail($"error event in a stream: {Clip(text)}");
        int tokens = stream
            ? text.Split("data: {").Length - 1   // one event per token, give or take the role and usage events
            : JsonDocument.Parse(text).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Interlocked.Add(ref tally.Tokens, tokens);
    }

    static async Task HangUp(HttpClient http, Random random, Tally tally)
    {
        var body = $$"""{"prompt":"{{Words(random, 20)}}","max_tokens":200,"stream":true}""";
        using var cts = new CancellationTokenSource();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var r = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        tally.Count(((int)r.StatusCode).ToString(CultureInfo.InvariantCulture));
        if (r.StatusCode != HttpStatusCode.OK) { tally.Fail($"stream → {(int)r.StatusCode}"); return; }
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(cts.Token));
        int events = 1 + random.Next(8);
        while (events > 0 && await reader.ReadLineAsync(cts.Token) is { } line)
            if (line.StartsWith("data:", StringComparison.Ordinal)) events--;
        cts.Cancel();   // the client goes away mid-stream
        Interlocked.Increment(ref tally.Cancelled);
    }

    static async Task Expect(HttpClient http, Tally tally, string path, string body, bool ok)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using var r = await http.PostAsync(path, content);
        int status = (int)r.StatusCode;
        tally.Count(status.ToString(CultureInfo.InvariantCulture));
        var text = await r.Content.ReadAsStringAsync();
        if (ok ? status != 200 : status is < 400 or >= 500) tally.Fail($"{path} → {status}: {Clip(text)}");
        if (!ok && !text.Contains("\"error\"")) tally.Fail($"{path} → {status} without OpenAI's envelope");
    }

    static string Clip(string s) => s.Length > 200 ? s[..200] + "…" : s;
}
