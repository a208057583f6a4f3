using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// The sampler alone, as the engine runs it (one step buffer, one upload, the batched pass, one
/// download, on a dedicated thread like the engine's): one pass over [R, 256k] float32 logits per
/// row count and sampling setting, medians with (min–max) of the repeats and page faults per
/// pass. The model does not matter here, only the vocabulary: the logits are drawn once per row
/// count from a normal distribution, "peaked" (σ = 4: a few hundred ids hold 90 % of the mass at
/// temperature 0.8, as a trained model's next-token distribution does) or "flat" (σ = 0.5: top-p
/// 0.9 keeps most of the vocabulary, the worst case for a nucleus).
/// </summary>
public sealed class SamplerBenchmark(int repeats, TextWriter progress)
{
    const int Vocab = 256000;
    static readonly int[] RowCounts = [1, 16, 64];

    /// <summary>Flat: false = peaked logits, null = broad, true = flat.</summary>
    static readonly (string Name, SamplingParams Params, int Top, bool? Flat)[] Settings =
    [
        ("greedy", SamplingParams.Greedy, 0, false),
        ("temperature 1", new SamplingParams(), 0, false),
        ("top-p 0.9, temperature 0.8 (peaked)", new SamplingParams { Temperature = 0.8f, TopP = 0.9f }, 0, false),
        ("top-p 0.9, temperature 0.8 (broad)", new SamplingParams { Temperature = 0.8f, TopP = 0.9f }, 0, null),
        ("top-p 0.9, temperature 0.8 (flat)", new SamplingParams { Temperature = 0.8f, TopP = 0.9f }, 0, true),
        ("top-k 50", new SamplingParams { TopK = 50 }, 0, false),
        ("min-p 0.05", new SamplingParams { MinP = 0.05f }, 0, false),
        ("greedy + logprobs (top 5)", SamplingParams.Greedy, 5, false),
        ("penalties (presence, frequency, repetition; 200-token history)", new SamplingParams { PresencePenalty = 0.5f, FrequencyPenalty = 0.3f, RepetitionPenalty = 1.2f }, 0, false),
    ];

    public string Run()
    {
        string text = "";
        var thread = new Thread(() => text = Measure(), 16 << 20) { Name = "sampler bench" };
        thread.Start();
        thread.Join();
        return text;
    }

    string Measure()
    {
        var ci = CultureInfo.InvariantCulture;
        using var buffer = new StepBuffer(CPU);
        var times = new Dictionary<(int, int), List<double>>();
        var faults = new Dictionary<(int, int), List<double>>();
        var nucleus = new Dictionary<int, double>();
        var rng = new Random(11);
        foreach (int r in RowCounts)
        {
            using var peaked = randn([r, Vocab], generator: new TorchSharp.torch.Generator(5)).mul_(4);
            using var broad = randn([r, Vocab], generator: new TorchSharp.torch.Generator(7)).mul_(2.5);
            using var flat = randn([r, Vocab], generator: new TorchSharp.torch.Generator(6)).mul_(0.5);
            if (r == RowCounts[0]) { nucleus[0] = NucleusSize(peaked); nucleus[1] = NucleusSize(broad); nucleus[2] = NucleusSize(flat); }
            var history = Enumerable.Range(0, 200).Select(_ => rng.Next(Vocab)).ToArray();
            for (int rep = 0; rep <= repeats; rep++)
                for (int s = 0; s < Settings.Length; s++)
                {
                    var (_, p, top, isFlat) = Settings[s];
                    var rows = Enumerable.Range(0, r).Select(i => new SamplingRow(p, SeededUniform.Draw((ulong)(i + 1), rep),
                        history[..100], history[100..], top, top > 0)).ToList();
                    long f0 = ProcessStats.PageFaults();
                    var clock = Stopwatch.StartNew();
                    using (var scope = NewDisposeScope())
                    {
                        buffer.Clear();
                        var plan = Sampler.Plan(buffer, rows, Vocab);
                        buffer.Upload();
                        buffer.Download(Sampler.Sample(isFlat switch { true => flat, null => broad, false => peaked }, plan, buffer));
                    }
                    double ms = clock.Elapsed.TotalMilliseconds;
                    long f = ProcessStats.PageFaults() - f0;
                    if (rep == 0) continue;   // warm-up
                    (times.TryGetValue((r, s), out var t) ? t : times[(r, s)] = []).Add(ms);
                    (faults.TryGetValue((r, s), out var q) ? q : faults[(r, s)] = []).Add(f);
                }
            progress.WriteLine($"[bench] sampler {r} rows done");
        }

        var sb = new StringBuilder();
        sb.AppendLine(ci, $"One sampler pass over [R, {Vocab}] float32 logits (plan, upload, pass, download), {repeats} repeats after a warm-up, settings in turn; ms median (min–max), page faults per pass (median). Top-p 0.9 at temperature 0.8 keeps {nucleus[0]:F0} ids of a peaked row, {nucleus[1]:F0} of a broad one (σ = 2.5), {nucleus[2]:F0} of a flat one.");
        sb.AppendLine();
        sb.AppendLine("| setting | " + string.Join(" | ", RowCounts.Select(r => $"{r} row{(r > 1 ? "s" : "")}: ms (faults)")) + " |");
        sb.AppendLine("|---|" + string.Concat(RowCounts.Select(_ => "---|")));
        for (int s = 0; s < Settings.Length; s++)
            sb.AppendLine($"| {Settings[s].Name} | " + string.Join(" | ", RowCounts.Select(r =>
            {
                var t = times[(r, s)]; t.Sort();
                var f = faults[(r, s)]; f.Sort();
                return $"{t[t.Count / 2].ToString("F1", ci)} ({t[0].ToString("F1", ci)}–{t[^1].ToString("F1", ci)}) ({f[f.Count / 2]:F0})";
            })) + " |");
        return sb.ToString();
    }

    /// <summary>How many ids of the first row top-p 0.9 keeps at temperature 0.8.</summary>
    static double NucleusSize(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var probs = (logits[0] / 0.8).softmax(-1).sort(descending: true).Values.cumsum(-1);
        return probs.lt(0.9).sum().item<long>() + 1;
    }
}
