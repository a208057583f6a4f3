using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// Where a batch-1 decode step spends its time, per layer type, against the time it takes just
/// to stream that part's weights once (its memory floor: weight bytes ÷ measured copy bandwidth).
/// Times come from marks at part boundaries (<see cref="GriffinForCausalLM.PartDone"/>) over
/// many steps; the median per part is reported. The step runs on the torch thread count the engine
/// would choose (<see cref="RecurrentGemma.Engine.ThreadCalibration"/>), and the copy bandwidth is
/// measured again before every step: on a shared VM it swings 2× within minutes, so each step is
/// held against the bandwidth of its own moment and the ratio's median and range are reported.
/// </summary>
public sealed class DecodeProfile(string shapeName, GriffinConfig config, ScalarType dtype, int steps, TextWriter progress)
{
    public string Run()
    {
        var ci = CultureInfo.InvariantCulture;
        string dt = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
        progress.WriteLine($"[bench] profile {shapeName}/{dt}: building random weights…");
        using var model = new GriffinForCausalLM(config, dtype, CPU);
        RandomWeights.Initialize(model, seed: 5);
        using var state = model.CreateState(1);
        using (model.Forward([[2L, 3, 4, 5, 6, 7, 8, 9]], state, [0])) { }
        int all = RecurrentGemma.Engine.ThreadCalibration.AllThreads;
        var decodeThreads = RecurrentGemma.Engine.ThreadCalibration.Calibrate(model);
        string threadChoice = decodeThreads.Reason;
        progress.WriteLine($"[bench] profile {shapeName}/{dt}: threads {threadChoice}");
        using var probe = new BandwidthProbe();

        var perPart = new Dictionary<string, List<double>>();
        var gemvPerPart = new Dictionary<string, List<double>>();   // of which in the SIMD projections
        var clock = new Stopwatch();
        double last = 0, lastGemv = 0;
        double GemvMs() => RecurrentGemma.Model.Modules.SimdGemv.Totals.Elapsed.TotalMilliseconds;
        void Mark(string name, double now)
        {
            double gemv = GemvMs();
            if (!perPart.TryGetValue(name, out var list)) perPart[name] = list = [];
            if (!gemvPerPart.TryGetValue(name, out var glist)) gemvPerPart[name] = glist = [];
            list.Add(now - last);
            glist.Add(gemv - lastGemv);
            last = now;
            lastGemv = gemv;
        }
        model.PartDone = name => Mark(name, clock.Elapsed.TotalMilliseconds);
        var totals = new List<double>();
        var ratios = new List<double>();
        var bandwidths = new List<double>();
        var readRatios = new List<double>();
        var readMs = new List<double>();
        var readVsFloor = new List<double>();
        var weights = model.NamedTensors().Select(t => t.Tensor).ToList();
        long faults0 = 0, faults = 0;
        for (int s = 0; s < steps + 1; s++)
        {
            double bw = probe.Measure();
            if (s >= 1) faults0 = ProcessStats.PageFaults();
            set_num_threads(decodeThreads.For(1));
            clock.Restart(); last = 0; lastGemv = GemvMs();
            using (model.Forward([[(long)(10 + s)]], state, [0])) { }
            double total = clock.Elapsed.TotalMilliseconds;   // the model marked "head" before its scope ended
            // The same weights read once, right after the step, with the kernels' threads and no arithmetic.
            var read = Stopwatch.StartNew();
            foreach (var w in weights) RecurrentGemma.Model.Modules.SimdGemv.ReadThrough(w);
            double readTotal = read.Elapsed.TotalMilliseconds;
            set_num_threads(all);
            if (s >= 1)
            {
                faults += ProcessStats.PageFaults() - faults0;
                ratios.Add(total / (model.ParameterBytes / bw * 1000));
                readRatios.Add(total / readTotal);
                readMs.Add(readTotal);
                readVsFloor.Add(readTotal / (model.ParameterBytes / bw * 1000));
                bandwidths.Add(bw);
            }
            totals.Add(total);
        }
        model.PartDone = null;
        double faultsPerStep = (double)faults / steps;

        // Weight bytes per part (the tied head reads the embedding table; the embedding lookup reads rows only).
        long Bytes(string prefix) => model.NamedTensors().Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal)).Sum(t => t.Tensor.numel() * t.Tensor.ElementSize);
        double Median(IEnumerable<double> xs) { var s = xs.Skip(1).Order().ToList(); return s[s.Count / 2]; }   // the first step warms up
        var rows = new List<(string Part, int Count, double Ms, double GemvMs, long Bytes)>();
        foreach (var kind in new[] { BlockKind.Recurrent, BlockKind.Attention })
        {
            var layers = Enumerable.Range(0, config.NumHiddenLayers).Where(l => config.KindOf(l) == kind).ToList();
            if (layers.Count == 0) continue;
            double ms = layers.Average(l => Median(perPart[$"block{l}"]));
            double gemv = layers.Average(l => Median(gemvPerPart[$"block{l}"]));
            long bytes = (long)layers.Average(l => Bytes($"model.layers.{l}."));
            rows.Add((kind == BlockKind.Recurrent ? "recurrent layer" : "attention layer", layers.Count, ms, gemv, bytes));
        }
        rows.Add(("embedding + setup", 1, Median(perPart["embed"]), Median(gemvPerPart["embed"]), 0));
        rows.Add(("final norm + tied head", 1, Median(perPart["head"]), Median(gemvPerPart["head"]), Bytes("model.embed_tokens.") + Bytes("model.final_norm.")));

        var sb = new StringBuilder();
        double bandwidthBytesPerSecond;
        double step = Median(totals);
        var ratio = Spread.Of(ratios);
        var bwNow = Spread.Of(bandwidths);
        bandwidthBytesPerSecond = bwNow.Median;
        long allBytes = model.ParameterBytes;
        sb.AppendLine(ci, $"**{shapeName} {dt}**, batch-1 decode step {step:F1} ms (median of {steps}; torch threads: {threadChoice}); copy bandwidth before each step {bwNow.Map(b => b / 1e9).Format("F1")} GB/s; step ÷ the floor of its moment **{ratio.Format("F2")}×**; a pass that only reads the same weights right after each step took {Spread.Of(readMs).Format("F1")} ms, {Spread.Of(readVsFloor).Format("F2")}× the floor, and the step is **{Spread.Of(readRatios).Format("F2")}×** that read; {faultsPerStep:F0} page faults per step:");
        sb.AppendLine();
        sb.AppendLine("| part | count | ms each | of which SIMD projections | weight MB each | floor ms each | ÷ floor | share of the step |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var (part, count, ms, gemv, bytes) in rows)
        {
            double floor = bytes / bandwidthBytesPerSecond * 1000;
            sb.AppendLine(ci, $"| {part} | {count} | {ms:F2} | {gemv:F2} | {bytes / 1e6:F1} | {floor:F2} | {(floor > 0 ? (ms / floor).ToString("F2", ci) + "×" : "–")} | {ms * count / step * 100:F0} % |");
        }
        progress.WriteLine($"[bench] profile {shapeName}/{dt}: {step:F1} ms per step");
        return sb.ToString();
    }
}
