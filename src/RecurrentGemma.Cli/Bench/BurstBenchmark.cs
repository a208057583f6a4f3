using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// What a seed costs when many requests arrive at once: a burst of sampled requests with short
/// prompts, once without seeds and once with one each, alternated on one engine. On the CPU a
/// seeded prompt is prefilled in a forward of its own (so that its text cannot depend on what
/// runs beside it), so the seeded burst takes more forwards; the table shows how many and what
/// that does to the last first token and the whole burst.
/// </summary>
public sealed class BurstBenchmark(string shapeName, GriffinConfig config, ScalarType dtype, int requests, int rounds, TextWriter progress)
{
    public string Run()
    {
        bool big = config.ParameterCount > 1_000_000_000;
        string dt = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
        int promptTokens = 8, newTokens = big ? 12 : 48;
        progress.WriteLine($"[bench] burst {shapeName}/{dt}: building random weights…");
        using var model = new GriffinForCausalLM(config, dtype, CPU);
        RandomWeights.Initialize(model, seed: 99);
        var rng = new Random(5);
        var prompts = Enumerable.Range(0, requests)
            .Select(_ => (int[])[2, .. Enumerable.Range(0, promptTokens - 1).Select(_ => rng.Next(3, config.VocabSize))]).ToList();
        var options = new EngineOptions { MaxSlots = requests + 1, MaxRunningSequences = requests, ParkFinishedStates = false };
        var engine = new EngineClient(model, options);
        var results = new Dictionary<bool, List<(double Total, double LastFirst, long Forwards)>> { [false] = [], [true] = [] };
        try
        {
            Burst(engine, prompts, newTokens, seeded: false); Burst(engine, prompts, newTokens, seeded: true);   // warm-up
            for (int r = 0; r < rounds; r++)
                foreach (bool seeded in new[] { false, true })
                {
                    var result = Burst(engine, prompts, newTokens, seeded);
                    results[seeded].Add(result);
                    progress.WriteLine($"[bench] burst round {r + 1}, {(seeded ? "seeded" : "unseeded")}: {result.Total:F2} s, last first token {result.LastFirst:F2} s, {result.Forwards} forwards");
                }
        }
        finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }

        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"**{shapeName} ({config.ParameterCount / 1e6:F0}M parameters, {dt})** — {requests} requests at once, {promptTokens}-token prompts, {newTokens} new tokens each, top-p 0.9 at temperature 0.8, prefill budget {options.PrefillTokenBudget} tokens a step; {rounds} rounds, unseeded and seeded in turn (median (min–max)):");
        sb.AppendLine();
        sb.AppendLine("| requests | whole burst | last first token | forwards |");
        sb.AppendLine("|---|---|---|---|");
        foreach (bool seeded in new[] { false, true })
        {
            var rows = results[seeded];
            sb.AppendLine(ci, $"| {(seeded ? "seeded (one seed each)" : "unseeded")} | {Spread.Of(rows.Select(x => x.Total).ToList()).Format("F2")} s | {Spread.Of(rows.Select(x => x.LastFirst).ToList()).Format("F2")} s | {Spread.Of(rows.Select(x => (double)x.Forwards).ToList()).Format("F0")} |");
        }
        sb.AppendLine();
        sb.Append(Stall(model, prompts.Count * 2, rounds, ci));
        return sb.ToString();
    }

    /// <summary>
    /// What a crowd of short seeded prompts does to streams already decoding: 4 greedy streams run,
    /// then <paramref name="burst"/> seeded 3-token prompts arrive; the streams' longest gap between
    /// two tokens, with each forward of its own charged 1 token of the budget and the default.
    /// </summary>
    string Stall(GriffinForCausalLM model, int burst, int rounds, CultureInfo ci)
    {
        var rng = new Random(11);
        var gaps = new Dictionary<int, List<double>> { [1] = [], [new EngineOptions().SeededForwardTokens] = [] };
        var done = gaps.Keys.ToDictionary(k => k, _ => new List<double>());
        for (int r = 0; r < rounds; r++)
            foreach (int charge in gaps.Keys)
            {
                var engine = new EngineClient(model, new EngineOptions { MaxSlots = burst + 5, MaxRunningSequences = burst + 4, ParkFinishedStates = false, SeededForwardTokens = charge });
                try
                {
                    var streams = Enumerable.Range(0, 4).Select(_ => engine.Submit(new GenerationRequest
                    {
                        PromptTokens = [2, rng.Next(3, config.VocabSize)], MaxNewTokens = 4096, Sampling = SamplingParams.Greedy,
                    })).ToList();
                    var clock = Stopwatch.StartNew();
                    var times = streams.Select(_ => new List<double>()).ToList();
                    var readers = streams.Select((h, i) => Task.Run(async () =>
                    {
                        await foreach (var e in h.ReadEventsAsync()) if (e is TokenEvent) lock (times[i]) times[i].Add(clock.Elapsed.TotalSeconds);
                    })).ToList();
                    while (times.Any(t => { lock (t) return t.Count < 3; })) Thread.Sleep(10);   // all four decoding
                    double from = clock.Elapsed.TotalSeconds;
                    var crowd = Enumerable.Range(0, burst).Select(i => engine.Submit(new GenerationRequest
                    {
                        PromptTokens = [2, rng.Next(3, config.VocabSize), rng.Next(3, config.VocabSize)], MaxNewTokens = 1,
                        Sampling = new SamplingParams { Temperature = 1, Seed = 500 + i },
                    })).ToList();
                    Task.WhenAll(crowd.Select(async h => { await foreach (var _ in h.ReadEventsAsync()) { } })).GetAwaiter().GetResult();
                    done[charge].Add(clock.Elapsed.TotalSeconds - from);
                    double to = clock.Elapsed.TotalSeconds + 0.5;
                    Thread.Sleep(500);
                    foreach (var h in streams) h.Cancel();
                    Task.WhenAll(readers).GetAwaiter().GetResult();
                    double worst = times.Max(t => { lock (t) return t.Zip(t.Skip(1), (a, b) => (a, b)).Where(p => p.b >= from && p.a <= to).Select(p => p.b - p.a).DefaultIfEmpty(0).Max(); });
                    gaps[charge].Add(worst);
                    progress.WriteLine($"[bench] stall round {r + 1}, charge {charge}: longest gap {worst:F2} s, the crowd done in {done[charge][^1]:F2} s");
                }
                finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
            }
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"4 greedy streams decoding when {burst} seeded 3-token prompts arrive (1 new token each): the streams' longest gap between two tokens and when the last of the crowd had its token, {rounds} rounds, median (min–max):");
        sb.AppendLine();
        sb.AppendLine("| a forward of its own counts against the step's budget | the streams' longest gap | the crowd's last token |");
        sb.AppendLine("|---|---|---|");
        foreach (var (charge, list) in gaps)
            sb.AppendLine(ci, $"| {(charge == 1 ? "its tokens (3)" : $"at least {charge} tokens (Engine:SeededForwardTokens, the default)")} | {Spread.Of(list).Format("F2")} s | {Spread.Of(done[charge]).Format("F2")} s |");
        return sb.ToString();
    }

    static (double Total, double LastFirst, long Forwards) Burst(EngineClient engine, List<int[]> prompts, int newTokens, bool seeded)
    {
        long before = engine.Snapshot.Forwards;
        var clock = Stopwatch.StartNew();
        var handles = prompts.Select((p, i) => engine.Submit(new GenerationRequest
        {
            PromptTokens = p, MaxNewTokens = newTokens,
            Sampling = new SamplingParams { Temperature = 0.8f, TopP = 0.9f, Seed = seeded ? 1000 + i : null },
        })).ToList();
        var firsts = Task.WhenAll(handles.Select(async h =>
        {
            double first = double.NaN;
            await foreach (var e in h.ReadEventsAsync())
                if (e is TokenEvent && double.IsNaN(first)) first = clock.Elapsed.TotalSeconds;
            return first;
        })).GetAwaiter().GetResult();
        double total = clock.Elapsed.TotalSeconds;
        return (total, firsts.Max(), engine.Snapshot.Forwards - before);
    }
}
