using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Bench;

/// <summary>
/// PNG charts for people who would rather look than read (docs/images/, linked from the README):
/// decode step time against context position up to 100k tokens (flat: the state has a fixed
/// size), aggregate decode throughput against concurrent sequences, and state bytes per sequence
/// against context length next to a same-size transformer's KV cache (formula, labelled so).
/// Every point is measured here except the KV-cache line; the numbers go to docs/benchmarks.md.
/// </summary>
public static class Charts
{
    static readonly long[] Positions = [100, 1_000, 4_000, 16_000, 32_000, 64_000, 100_000];

    public static string Run(string imageDir, TextWriter progress)
    {
        Directory.CreateDirectory(imageDir);
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Charts (issue #9)");
        sb.AppendLine();
        sb.AppendLine($"Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --charts --out docs/benchmarks.md` (writes `{imageDir}/*.png`)  ");
        sb.AppendLine(ci, $"Machine: {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}, random weights; a step time is the median of 9 steps, a throughput the median of 3 runs of 32 tokens per sequence.");
        sb.AppendLine();

        // 1. Step time against position.
        var flat = new List<(string Name, double[] Ms)>();
        foreach (var (name, config, dtype) in new[] { ("small (183M) f32", Cli.Commands.BenchCommand.Small, ScalarType.Float32), ("2B bf16", GriffinConfig.RecurrentGemma2B, ScalarType.BFloat16) })
        {
            progress.WriteLine($"[charts] step time vs position: {name}");
            using var model = new GriffinForCausalLM(config, dtype, CPU);
            RandomWeights.Initialize(model, seed: 11);
            flat.Add((name, Positions.Select(p => StepAt(model, p)).ToArray()));
        }
        sb.AppendLine("| position | " + string.Join(" | ", flat.Select(f => f.Name + " ms/step")) + " |");
        sb.AppendLine("|---|" + string.Concat(flat.Select(_ => "---|")));
        for (int i = 0; i < Positions.Length; i++)
            sb.AppendLine("| " + Positions[i].ToString("N0", ci) + " | " + string.Join(" | ", flat.Select(f => f.Ms[i].ToString("F1", ci))) + " |");
        sb.AppendLine();
        {
            var plot = new ScottPlot.Plot();
            double[] xs = Positions.Select(p => (double)p).ToArray();
            foreach (var f in flat)
            {
                double[] ys = f.Ms;
                var line = plot.Add.Scatter(xs, ys);
                line.LegendText = f.Name;
            }
            plot.Title("Decode step time vs context position (batch 1)");
            plot.XLabel("tokens already in the context");
            plot.YLabel("ms per decode step");
            plot.Axes.SetLimitsY(0, flat.Max(f => f.Ms.Max()) * 1.2);
            plot.ShowLegend(ScottPlot.Alignment.LowerRight);
            plot.SavePng(Path.Combine(imageDir, "step-time-vs-position.png"), 800, 450);
        }

        // 2. Aggregate throughput against concurrent sequences (the engine, small shape, bf16).
        int[] concurrency = [1, 2, 4, 8, 16, 32];
        var throughput = new List<double>();
        {
            using var model = new GriffinForCausalLM(Cli.Commands.BenchCommand.Small, ScalarType.BFloat16, CPU);
            RandomWeights.Initialize(model, seed: 12);
            foreach (int c in concurrency)
            {
                progress.WriteLine($"[charts] throughput at {c} sequences");
                throughput.Add(Throughput(model, c));
            }
        }
        sb.AppendLine("| concurrent sequences | aggregate decode tok/s (small shape, bf16, through the engine) |");
        sb.AppendLine("|---|---|");
        for (int i = 0; i < concurrency.Length; i++) sb.AppendLine(ci, $"| {concurrency[i]} | {throughput[i]:F1} |");
        sb.AppendLine();
        {
            var plot = new ScottPlot.Plot();
            double[] values = throughput.ToArray();
            plot.Add.Bars(values);
            plot.Axes.Bottom.SetTicks(Enumerable.Range(0, concurrency.Length).Select(i => (double)i).ToArray(), concurrency.Select(c => c.ToString(ci)).ToArray());
            plot.Title("Aggregate decode throughput vs concurrent sequences (small shape, bf16)");
            plot.XLabel("concurrent sequences");
            plot.YLabel("tokens per second, all sequences");
            plot.Axes.Margins(bottom: 0);
            plot.SavePng(Path.Combine(imageDir, "throughput-vs-concurrency.png"), 800, 450);
        }

        // 3. Memory per sequence: Griffin's fixed state vs a transformer's KV cache (formula).
        var c2 = GriffinConfig.RecurrentGemma2B;
        double stateMiB;
        using (var one = new GriffinState(c2, 1, ScalarType.BFloat16, CPU)) stateMiB = one.AllocatedBytes / 1048576.0;   // what one slot really allocates
        // Gemma-2B (the transformer of the same family and size): 18 layers, 1 KV head (MQA), head dim 256, bf16.
        const double kvBytesPerToken = 2 * 18 * 1 * 256 * 2;
        long[] lengths = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 100_000];
        sb.AppendLine(ci, $"State per sequence, RecurrentGemma-2B bf16: {stateMiB:F1} MiB at any length (the bytes a one-slot state allocates). KV cache of Gemma-2B (18 layers × 1 KV head × 256 dims × K and V × 2 bytes = {kvBytesPerToken / 1024:F0} KiB per token, formula): {lengths.Last() * kvBytesPerToken / 1048576.0:F0} MiB at 100k tokens.");
        sb.AppendLine();
        {
            var plot = new ScottPlot.Plot();
            var xs = lengths.Select(l => (double)l).ToArray();
            double[] flatLine = xs.Select(_ => stateMiB).ToArray(), kvLine = xs.Select(x => x * kvBytesPerToken / 1048576.0).ToArray();
            var griffin = plot.Add.Scatter(xs, flatLine);
            griffin.LegendText = "RecurrentGemma-2B state (bytes a one-slot state allocates)";
            var kv = plot.Add.Scatter(xs, kvLine);
            kv.LegendText = "Gemma-2B KV cache (formula: 18 × 1 × 256 × 2 × 2 bytes per token)";
            plot.Title("Memory per sequence vs context length (bf16)");
            plot.XLabel("tokens in the context");
            plot.YLabel("MiB per sequence");
            plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
            plot.SavePng(Path.Combine(imageDir, "state-bytes-vs-context.png"), 800, 450);
        }
        sb.AppendLine($"![decode step time vs position]({Path.GetFileName(imageDir)}/step-time-vs-position.png) ![throughput vs concurrency]({Path.GetFileName(imageDir)}/throughput-vs-concurrency.png) ![state bytes vs context]({Path.GetFileName(imageDir)}/state-bytes-vs-context.png)");
        return sb.ToString();
    }

    /// <summary>Median batch-1 step time with the slot at a position: its tensors filled with
    /// random values and the position set directly (the cost depends on the fixed-size state,
    /// not on its contents, and prefilling 100k tokens would take hours here).</summary>
    static double StepAt(GriffinForCausalLM model, long position)
    {
        using var state = model.CreateState(1);
        using (no_grad()) foreach (var t in state.AllTensors()) t.normal_(0, 0.5);
        state.SetTokenCount(0, position);
        var times = new List<double>();
        for (int s = 0; s < 10; s++)
        {
            var clock = Stopwatch.StartNew();
            using (model.Forward([new long[] { 5 + s }], state, [0])) { }
            if (s > 0) times.Add(clock.Elapsed.TotalMilliseconds);   // the first step warms up
        }
        times.Sort();
        return times[times.Count / 2];
    }

    static double Throughput(GriffinForCausalLM model, int sequences)
    {
        const int newTokens = 32;
        var engine = new EngineClient(model, new EngineOptions { MaxSlots = sequences + 1, MaxRunningSequences = sequences, ParkFinishedStates = false, PrefillTokenBudget = 8 * sequences });
        try
        {
            void Go(int n) => Task.WhenAll(Enumerable.Range(0, sequences).Select(async i =>
            {
                var h = engine.Submit(new GenerationRequest { PromptTokens = [2, 10 + i, 20 + i, 30, 40, 50, 60, 70], MaxNewTokens = n, Sampling = SamplingParams.Greedy });
                await foreach (var _ in h.ReadEventsAsync()) { }
            })).GetAwaiter().GetResult();
            Console.Error.WriteLine($"[charts] {sequences} sequences, engine {engine.ThreadChoice}");
            Go(2);   // warm-up
            var rates = new List<double>();
            for (int r = 0; r < 3; r++)
            {
                var clock = Stopwatch.StartNew();
                Go(newTokens);
                rates.Add(sequences * newTokens / clock.Elapsed.TotalSeconds);
            }
            rates.Sort();
            Console.Error.WriteLine($"[charts] {sequences} sequences: {string.Join(", ", rates.Select(r => r.ToString("F1")))} tok/s");
            return rates[1];
        }
        finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
    }
}
