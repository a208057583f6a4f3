using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// The engine on random-weight models: aggregate decode throughput at 1…32 concurrent sequences
/// (or the levels given: a GPU's batches go far wider; in rotation over several rounds, medians),
/// where a step's time goes (model forward, sampler, the rest = scheduling and bookkeeping), and
/// a 10-turn conversation with and without session reuse, and scoring a prompt against prefilling it.
/// </summary>
public sealed class EngineBenchmark(string shapeName, GriffinConfig config, ScalarType dtype, bool quick, TextWriter progress, int? repeats = null, Device? device = null, int[]? concurrency = null)
{
    public string Run()
    {
        bool big = config.ParameterCount > 1_000_000_000;
        string dt = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
        progress.WriteLine($"[bench] engine {shapeName}/{dt}: building random weights…");
        using var model = new GriffinForCausalLM(config, dtype, device ?? CPU);
        RandomWeights.Initialize(model, seed: 99);
        var rng = new Random(3);
        int[] Prompt(int n) => [2, .. Enumerable.Range(0, n - 1).Select(_ => rng.Next(3, config.VocabSize))];
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();

        // 1. Aggregate decode throughput and the step's time split: one engine (one thread
        //    calibration) for every level, levels in rotation for several rounds, so that a slow
        //    phase of a noisy machine falls on every level alike; medians with (min–max).
        int newTokens = big ? (quick ? 4 : 10) : (quick ? 16 : 48);
        // One sequence always runs: every other level is reported against it.
        int[] levels = [.. (concurrency ?? [4, 16, 32]).Append(1).Where(c => c > 0).Distinct().Order()];
        int rounds = Math.Max(1, repeats ?? (quick ? 1 : 3));
        sb.AppendLine(ci, $"**{shapeName} ({config.ParameterCount / 1e6:F0}M parameters, {dt})** — decode throughput, {newTokens} new tokens per sequence after an 8-token prompt, {rounds} rounds over the levels in turn (median (min–max)):");
        sb.AppendLine();
        sb.AppendLine("| concurrent sequences | aggregate tok/s, end to end | decode-only tok/s (all decoding) | decode × single (per round) | step: forward / sampler / other |");
        sb.AppendLine("|---|---|---|---|---|");
        var engine = new EngineClient(model, new EngineOptions { MaxSlots = levels.Max() + 1, MaxRunningSequences = levels.Max(), MaxQueuedRequests = Math.Max(64, levels.Max()), ParkFinishedStates = false, PrefillTokenBudget = 8 * levels.Max() });
        var endToEnd = levels.ToDictionary(c => c, _ => new List<double>());
        var decodeOnly = levels.ToDictionary(c => c, _ => new List<double>());
        var perRound = levels.ToDictionary(c => c, _ => new List<double>());
        var split = levels.ToDictionary(c => c, _ => new double[3]);   // forward, sampler, busy seconds summed over rounds
        try
        {
            foreach (int c in levels) Generate(engine, Enumerable.Range(0, c).Select(_ => Prompt(8)).ToList(), 2);   // warm-up: each batch size's first steps
            for (int r = 0; r < rounds; r++)
                foreach (int c in levels)
                {
                    var before = engine.Snapshot;
                    var clock = Stopwatch.StartNew();
                    var times = Generate(engine, Enumerable.Range(0, c).Select(_ => Prompt(8)).ToList(), newTokens);
                    double seconds = clock.Elapsed.TotalSeconds;
                    var after = engine.Snapshot;
                    endToEnd[c].Add(c * newTokens / seconds);
                    double decode = DecodeOnly(times);
                    decodeOnly[c].Add(decode);
                    perRound[c].Add(decode / decodeOnly[1][^1]);
                    split[c][0] += after.ForwardSeconds - before.ForwardSeconds;
                    split[c][1] += after.SamplerSeconds - before.SamplerSeconds;
                    split[c][2] += after.BusySeconds - before.BusySeconds;
                    progress.WriteLine($"[bench] round {r + 1}, {c} concurrent: {c * newTokens / seconds:F2} tok/s end to end, {decode:F2} tok/s decoding");
                }
            progress.WriteLine($"[bench] threads {engine.ThreadChoice}");
        }
        finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        foreach (int c in levels)
        {
            var (fwd, smp, busy) = (split[c][0], split[c][1], split[c][2]);
            double other = busy - fwd - smp;
            sb.AppendLine(ci, $"| {c} | {Spread.Of(endToEnd[c]).Format("F2")} | {Spread.Of(decodeOnly[c]).Format("F2")} | {Spread.Of(perRound[c]).Format("F2")}× | {fwd / busy * 100:F1}% / {smp / busy * 100:F1}% / {other / busy * 100:F1}% (other ÷ forward = {other / fwd * 100:F1}%) |");
        }
        sb.AppendLine();
        sb.AppendLine(ci, $"Torch threads ({shapeName}), {engine.ThreadChoice}.");

        // 2. A 10-turn conversation: each turn sends the whole history back.
        sb.AppendLine();
        int answer = big ? 4 : 16, user = 24;
        sb.AppendLine(ci, $"10-turn conversation ({user} new user tokens and a {answer}-token answer per turn; prompt = whole history, as clients send it):");
        sb.AppendLine();
        sb.AppendLine("| turn | prompt tokens | prefilled without reuse | TTFT without reuse | prefilled with session reuse | TTFT with reuse |");
        sb.AppendLine("|---|---|---|---|---|---|");
        var without = Conversation(model, reuse: false, answer, user, new Random(8));
        var with = Conversation(model, reuse: true, answer, user, new Random(8));
        for (int t = 0; t < without.Count; t++)
            sb.AppendLine(ci, $"| {t + 1} | {without[t].Prompt} | {without[t].Prefilled} | {without[t].Ttft * 1000:F0} ms | {with[t].Prefilled} | {with[t].Ttft * 1000:F0} ms |");
        progress.WriteLine($"[bench] conversation: turn 10 TTFT {without[^1].Ttft * 1000:F0} ms without reuse, {with[^1].Ttft * 1000:F0} ms with");

        // 3. Scoring a prompt (completions' echo with logprobs, as evaluation harnesses read a
        //    text's log-likelihood) against prefilling it plainly; alternated, medians.
        sb.AppendLine();
        int scoredT = big ? 256 : 512, scoreRounds = Math.Max(1, repeats ?? (quick ? 1 : 3));
        var (plain, scored) = Scoring(model, Prompt(scoredT), scoreRounds);
        sb.AppendLine(ci, $"Scoring a {scoredT}-token prompt (prompt logprobs, 1 alternative, max_tokens 0; chunks of {new EngineOptions().ScoredChunkTokens} tokens run alone with every position's logits) against prefilling it (one token generated), {scoreRounds} rounds alternated: "
            + $"**{Spread.Of(scored).Format("F1")} tok/s scored, {Spread.Of(plain).Format("F1")} tok/s plain** ({Spread.Of(scored).Median / Spread.Of(plain).Median:F2}×).");
        progress.WriteLine($"[bench] scoring {scoredT} tokens: {Spread.Of(scored).Median:F1} tok/s vs plain prefill {Spread.Of(plain).Median:F1}");
        return sb.ToString();
    }

    /// <summary>Prompt tokens per second, plainly prefilled and scored, rounds alternated on one engine.</summary>
    static (List<double> Plain, List<double> Scored) Scoring(GriffinForCausalLM model, int[] prompt, int rounds)
    {
        var engine = new EngineClient(model, new EngineOptions { MaxSlots = 2, ParkFinishedStates = false });
        var plain = new List<double>();
        var scored = new List<double>();
        try
        {
            double Time(GenerationRequest r)
            {
                var clock = Stopwatch.StartNew();
                Task.Run(async () => { await foreach (var _ in engine.Submit(r).ReadEventsAsync()) { } }).GetAwaiter().GetResult();
                return prompt.Length / clock.Elapsed.TotalSeconds;
            }
            var plainRequest = new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 1, Sampling = SamplingParams.Greedy };
            var scoredRequest = plainRequest with { MaxNewTokens = 0, PromptLogprobs = 1 };
            Time(plainRequest); Time(scoredRequest);   // warm-up: first touch of each path's memory
            for (int r = 0; r < rounds; r++) { plain.Add(Time(plainRequest)); scored.Add(Time(scoredRequest)); }
        }
        finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        return (plain, scored);
    }

    /// <summary>Runs the prompts together; returns each sequence's token arrival times (s).</summary>
    static List<List<double>> Generate(EngineClient engine, List<int[]> prompts, int newTokens)
    {
        var clock = Stopwatch.StartNew();
        var handles = prompts.Select(p => engine.Submit(new GenerationRequest { PromptTokens = p, MaxNewTokens = newTokens, Sampling = SamplingParams.Greedy })).ToList();
        return Task.WhenAll(handles.Select(async h =>
        {
            var times = new List<double>();
            await foreach (var e in h.ReadEventsAsync()) if (e is TokenEvent) times.Add(clock.Elapsed.TotalSeconds);
            return times;
        })).GetAwaiter().GetResult().ToList();
    }

    /// <summary>
    /// Tokens per second while every sequence decodes: from the moment the last one produced its
    /// first token (all prompts are in) to the moment the first one finished.
    /// </summary>
    static double DecodeOnly(List<List<double>> times)
    {
        double start = times.Max(t => t[0]), end = times.Min(t => t[^1]);
        int tokens = times.Sum(t => t.Count(x => x > start && x <= end));
        return end > start ? tokens / (end - start) : double.NaN;
    }

    List<(int Prompt, int Prefilled, double Ttft)> Conversation(GriffinForCausalLM model, bool reuse, int answerTokens, int userTokens, Random rng)
    {
        var engine = new EngineClient(model, new EngineOptions { MaxSlots = 4, ParkFinishedStates = reuse, PrefillTokenBudget = 4096 });
        var turns = new List<(int, int, double)>();
        try
        {
            var history = new List<int> { 2 };
            for (int turn = 0; turn < 10; turn++)
            {
                history.AddRange([106, .. Enumerable.Range(0, userTokens).Select(_ => rng.Next(200, config.VocabSize)), 107, 108, 106, 108]);
                var clock = Stopwatch.StartNew();
                double ttft = 0;
                var answer = new List<int>();
                int cached = 0;
                var handle = engine.Submit(new GenerationRequest { PromptTokens = [.. history], MaxNewTokens = answerTokens, Sampling = SamplingParams.Greedy, SessionId = "conversation" });
                Task.Run(async () =>
                {
                    await foreach (var e in handle.ReadEventsAsync())
                    {
                        if (e is TokenEvent t) { if (answer.Count == 0) ttft = clock.Elapsed.TotalSeconds; answer.Add(t.TokenId); }
                        if (e is UsageEvent u) cached = u.CachedTokens;
                    }
                }).GetAwaiter().GetResult();
                turns.Add((history.Count, history.Count - cached, ttft));
                history.AddRange([.. answer, 107, 108]);
            }
        }
        finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        return turns;
    }
}
