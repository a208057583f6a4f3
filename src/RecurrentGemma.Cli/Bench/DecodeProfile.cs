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
/// many steps; the median per part is reported.
/// </summary>
public sealed class DecodeProfile(string shapeName, GriffinConfig config, ScalarType dtype, int steps, TextWriter progress)
{
    public string Run(double bandwidthBytesPerSecond)
    {
        var ci = CultureInfo.InvariantCulture;
        string dt = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
        progress.WriteLine($"[bench] profile {shapeName}/{dt}: building random weights…");
        using var model = new GriffinForCausalLM(config, dtype, CPU);
        RandomWeights.Initialize(model, seed: 5);
        using var state = model.CreateState(1);
        using (model.Forward([[2L, 3, 4, 5, 6, 7, 8, 9]], state, [0])) { }

        var perPart = new Dictionary<string, List<double>>();
        var clock = new Stopwatch();
        double last = 0;
        model.PartDone = name =>
        {
            double now = clock.Elapsed.TotalMilliseconds;
            if (!perPart.TryGetValue(name, out var list)) perPart[name] = list = [];
            list.Add(now - last);
            last = now;
        };
        var totals = new List<double>();
        long faults0 = 0;
        for (int s = 0; s < steps + 1; s++)
        {
            if (s == 1) faults0 = ProcessStats.PageFaults();
            clock.Restart(); last = 0;
            using (model.Forward([[(long)(10 + s)]], state, [0])) { }
            double total = clock.Elapsed.TotalMilliseconds;
            if (!perPart.TryGetValue("head", out var head)) perPart["head"] = head = [];
            head.Add(total - last);
            totals.Add(total);
        }
        model.PartDone = null;
        double faultsPerStep = (double)(ProcessStats.PageFaults() - faults0) / steps;

        // Weight bytes per part (the tied head reads the embedding table; the embedding lookup reads rows only).
        long Bytes(string prefix) => model.NamedTensors().Where(t => t.Name.StartsWith(prefix, StringComparison.Ordinal)).Sum(t => t.Tensor.numel() * t.Tensor.ElementSize);
        double Median(IEnumerable<double> xs) { var s = xs.Skip(1).Order().ToList(); return s[s.Count / 2]; }   // the first step warms up
        var rows = new List<(string Part, int Count, double Ms, long Bytes)>();
        foreach (var kind in new[] { BlockKind.Recurrent, BlockKind.Attention })
        {
            var layers = Enumerable.Range(0, config.NumHiddenLayers).Where(l => config.KindOf(l) == kind).ToList();
            if (layers.Count == 0) continue;
            double ms = layers.Average(l => Median(perPart[$"block{l}"]));
            long bytes = (long)layers.Average(l => Bytes($"model.layers.{l}."));
            rows.Add((kind == BlockKind.Recurrent ? "recurrent layer" : "attention layer", layers.Count, ms, bytes));
        }
        rows.Add(("embedding + setup", 1, Median(perPart["embed"]), 0));
        rows.Add(("final norm + tied head", 1, Median(perPart["head"]), Bytes("model.embed_tokens.") + Bytes("model.final_norm.")));

        var sb = new StringBuilder();
        double step = Median(totals);
        long allBytes = model.ParameterBytes;
        sb.AppendLine(ci, $"**{shapeName} {dt}**, batch-1 decode step {step:F1} ms (median of {steps}) vs memory floor {allBytes / bandwidthBytesPerSecond * 1000:F1} ms ({step / (allBytes / bandwidthBytesPerSecond * 1000):F2}×), {faultsPerStep:F0} page faults per step:");
        sb.AppendLine();
        sb.AppendLine("| part | count | ms each | weight MB each | floor ms each | ÷ floor | share of the step |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var (part, count, ms, bytes) in rows)
        {
            double floor = bytes / bandwidthBytesPerSecond * 1000;
            sb.AppendLine(ci, $"| {part} | {count} | {ms:F2} | {bytes / 1e6:F1} | {floor:F2} | {(floor > 0 ? (ms / floor).ToString("F2", ci) + "×" : "–")} | {ms * count / step * 100:F0} % |");
        }
        progress.WriteLine($"[bench] profile {shapeName}/{dt}: {step:F1} ms per step");
        return sb.ToString();
    }
}
