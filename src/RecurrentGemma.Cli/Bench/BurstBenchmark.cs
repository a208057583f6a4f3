using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// What a seed costs when many requests arrive at once: a burst of sampled requests with short
/// prompts, without seeds and with one each, alternated on one engine. On the CPU a seeded
/// prompt must be prefilled as it would be alone (so that its text cannot depend on what runs
/// beside it): in the step's one row-exact forward (RowExactForward) where the model's GEMM
/// kernels are here, else in a forward of its own; the table shows both (the second by
/// switching the row-exact kernel off, <see cref="Model.Modules.RowExactGemm.Enabled"/>), how many
/// forwards each takes and what that does to the last first token and the whole burst.
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
        var results = Variants.ToDictionary(v => v, _ => new List<(double Total, double LastFirst, long Forwards)>());
        try
        {
            foreach (var v in Variants) Burst(engine, prompts, newTokens, v);   // warm-up
            for (int r = 0; r < rounds; r++)
                foreach (var v in Variants)
                {
                    var result = Burst(engine, prompts, newTokens, v);
                    results[v].Add(result);
                    progress.WriteLine($"[bench] burst round {r + 1}, {v.Name}: {result.Total:F2} s, last first token {result.LastFirst:F2} s, {result.Forwards} forwards");
                }
        }
        finally
        {
            Model.Modules.RowExactGemm.Enabled = true;
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"**{shapeName} ({config.ParameterCount / 1e6:F0}M parameters, {dt})** — {requests} requests at once, {promptTokens}-token prompts, {newTokens} new tokens each, top-p 0.9 at temperature 0.8, prefill budget {options.PrefillTokenBudget} tokens a step; {rounds} rounds, the three in turn (median (min–max)):");
        sb.AppendLine();
        sb.AppendLine("| requests | whole burst | last first token | forwards |");
        sb.AppendLine("|---|---|---|---|");
        foreach (var v in Variants)
        {
            var rows = results[v];
            sb.AppendLine(ci, $"| {v.Name} | {Spread.Of(rows.Select(x => x.Total).ToList()).Format("F2")} s | {Spread.Of(rows.Select(x => x.LastFirst).ToList()).Format("F2")} s | {Spread.Of(rows.Select(x => (double)x.Forwards).ToList()).Format("F0")} |");
        }
        sb.AppendLine();
        sb.Append(Stall(model, prompts.Count * 2, rounds, ci));
        sb.AppendLine();
        sb.Append(Alone(model, rounds, ci));
        return sb.ToString();
    }

    /// <summary>
    /// What the row-exact forward costs a seeded request on its own: time to first token of one
    /// seeded request with nothing else running, at a few prompt lengths, its prompt in a
    /// row-exact forward (the model's GEMM for every projection; up to 16 rows unpacked where
    /// timed faster, and packed as before), and in a forward of its own (the kernels the timing
    /// picks for its row count); and an unseeded one as served (a lone short chunk row-exact
    /// where timed faster); in turn on one engine.
    /// </summary>
    string Alone(GriffinForCausalLM model, int rounds, CultureInfo ci)
    {
        int[] lengths = [4, 8, 12, 16, 128, 512];
        (string Name, bool Exact, bool? Unpacked, bool Seeded)[] paths = [("row-exact forward", true, null, true), ("row-exact, packed", true, false, true),
            ("a forward of its own", false, null, true), ("unseeded, as served", true, null, false)];
        var rng = new Random(17);
        var times = lengths.ToDictionary(n => n, _ => paths.Select(_ => new List<double>()).ToArray());
        var engine = new EngineClient(model, new EngineOptions { MaxSlots = 2, MaxRunningSequences = 1, ParkFinishedStates = false });
        try
        {
            for (int r = -1; r < rounds; r++)   // round -1: warm-up
                foreach (int n in lengths)
                    foreach (var (path, i) in paths.Select((p, i) => (p, i)))
                    {
                        (Model.Modules.RowExactGemm.Enabled, Model.Modules.RowExactGemm.Unpacked) = (path.Exact, path.Unpacked);
                        int[] prompt = [2, .. Enumerable.Range(0, n - 1).Select(_ => rng.Next(3, config.VocabSize))];
                        var clock = Stopwatch.StartNew();
                        var h = engine.Submit(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 1, Sampling = new SamplingParams { Temperature = 1, Seed = path.Seeded ? 7 : null } });
                        Task.Run(async () => { await foreach (var _ in h.ReadEventsAsync()) { } }).GetAwaiter().GetResult();
                        if (r < 0) continue;
                        times[n][i].Add(clock.Elapsed.TotalSeconds);
                        progress.WriteLine($"[bench] alone round {r + 1}, {n} tokens, {path.Name}: {clock.Elapsed.TotalSeconds:F2} s");
                    }
        }
        finally
        {
            (Model.Modules.RowExactGemm.Enabled, Model.Modules.RowExactGemm.Unpacked) = (true, null);
            engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        string kernel = dtype == ScalarType.Float32 ? Model.Modules.F32Gemm.Describe() : Model.Modules.Bf16Gemm.Describe();
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"One seeded request alone (1 new token): time to first token by prompt length, its prompt in a row-exact forward (up to {Model.Modules.RowExactGemm.UnpackedMaxRows} rows unpacked where timed faster; here: {kernel}), in one with every projection packed, in a forward of its own (the kernels timed for its row count: how any prompt alone ran before lone short chunks could go row-exact), and unseeded as the engine now serves it (a lone chunk of {Model.Modules.RowExactGemm.LoneChunkMinRows}–{Model.Modules.RowExactGemm.UnpackedMaxRows} tokens row-exact where timed faster), in turn, {rounds} rounds, median (min–max):");
        sb.AppendLine();
        sb.AppendLine("| prompt | " + string.Join(" | ", paths.Select(p => p.Name)) + " |");
        sb.AppendLine("|---|---|---|---|---|");
        foreach (int n in lengths)
            sb.AppendLine(ci, $"| {n} tokens | {string.Join(" | ", times[n].Select(t => Spread.Of(t).Format("F2") + " s"))} |");
        return sb.ToString();
    }

    /// <summary>One way a burst is sent: with seeds or not, and whether seeded prompts may share a row-exact forward.</summary>
    sealed record Variant(string Name, bool Seeded, bool RowExact);

    static readonly Variant[] Variants =
    [
        new("unseeded", false, true),
        new("seeded, one row-exact forward a step", true, true),
        new("seeded, a forward each (row-exact kernel off)", true, false),
    ];

    /// <summary>
    /// What a crowd of short seeded prompts does to streams already decoding: 4 greedy streams run,
    /// then <paramref name="burst"/> seeded 3-token prompts arrive; the streams' longest gap between
    /// two tokens, the prompts in forwards of their own (each charged the default
    /// Engine:SeededForwardTokens of the budget) and in row-exact forwards.
    /// </summary>
    string Stall(GriffinForCausalLM model, int burst, int rounds, CultureInfo ci)
    {
        var rng = new Random(11);
        var gaps = new Dictionary<bool, List<double>> { [false] = [], [true] = [] };
        var done = gaps.Keys.ToDictionary(k => k, _ => new List<double>());
        for (int r = 0; r < rounds; r++)
            foreach (bool exact in gaps.Keys)
            {
                Model.Modules.RowExactGemm.Enabled = exact;
                var engine = new EngineClient(model, new EngineOptions { MaxSlots = burst + 5, MaxRunningSequences = burst + 4, ParkFinishedStates = false });
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
                    done[exact].Add(clock.Elapsed.TotalSeconds - from);
                    double to = clock.Elapsed.TotalSeconds + 0.5;
                    Thread.Sleep(500);
                    foreach (var h in streams) h.Cancel();
                    Task.WhenAll(readers).GetAwaiter().GetResult();
                    double worst = times.Max(t => { lock (t) return t.Zip(t.Skip(1), (a, b) => (a, b)).Where(p => p.b >= from && p.a <= to).Select(p => p.b - p.a).DefaultIfEmpty(0).Max(); });
                    gaps[exact].Add(worst);
                    progress.WriteLine($"[bench] stall round {r + 1}, {(exact ? "row-exact" : "own forwards")}: longest gap {worst:F2} s, the crowd done in {done[exact][^1]:F2} s");
                }
                finally
                {
                    Model.Modules.RowExactGemm.Enabled = true;
                    engine.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }
        var sb = new StringBuilder();
        sb.AppendLine(ci, $"4 greedy streams decoding when {burst} seeded 3-token prompts arrive (1 new token each): the streams' longest gap between two tokens and when the last of the crowd had its token, {rounds} rounds, median (min–max):");
        sb.AppendLine();
        sb.AppendLine("| the seeded prompts | the streams' longest gap | the crowd's last token |");
        sb.AppendLine("|---|---|---|");
        foreach (var (exact, list) in gaps)
            sb.AppendLine(ci, $"| {(exact ? "one row-exact forward a step" : $"a forward each, each charged at least {new EngineOptions().SeededForwardTokens} tokens (row-exact kernel off)")} | {Spread.Of(list).Format("F2")} s | {Spread.Of(done[exact]).Format("F2")} s |");
        return sb.ToString();
    }

    static (double Total, double LastFirst, long Forwards) Burst(EngineClient engine, List<int[]> prompts, int newTokens, Variant v)
    {
        Model.Modules.RowExactGemm.Enabled = v.RowExact;
        bool seeded = v.Seeded;
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
