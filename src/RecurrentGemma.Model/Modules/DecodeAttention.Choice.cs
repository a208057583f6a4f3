using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>When the fused decode-attention pass takes a step: the crossover against the tensor
/// path, timed once per shape on this machine.</summary>
public static partial class DecodeAttention
{
    static readonly ConcurrentDictionary<(ScalarType, int, int, long, int), double> Crossovers = new();

    /// <summary>
    /// Whether the fused pass should take a step whose rows see <paramref name="visible"/> ring
    /// keys in all (each at most <paramref name="window"/>), given the measured crossover fraction.
    /// </summary>
    public static bool Prefers(long visible, int rows, long window, double crossover) =>
        visible + rows <= crossover * rows * (window + 1);   // + rows: every row also sees its new key

    /// <summary>
    /// The fraction of a full window at which the fused pass costs what the tensor path does, for
    /// this dtype and shape on this machine: both timed once with full windows, first use per
    /// shape (tensor time ÷ fused time, median of 3 alternating rounds after a warm-up; ≥ 1 means
    /// the fused pass wins even at a full window), over one row for batches whose rows are split
    /// (<see cref="Splits"/>: the pass then spreads one row over the cores), else over 8 rows.
    /// </summary>
    public static double CrossoverFraction(ScalarType dtype, int heads, int headDim, long window, int rows = 8) =>
        Crossovers.GetOrAdd((dtype, heads, headDim, window, Splits(rows, (int)window + 1) > 1 ? 1 : 8),
            key => KernelChoices.Decide($"decode-attention/{KernelChoices.Name(key.Item1)}/h{key.Item2}/d{key.Item3}/w{key.Item4}/r{key.Item5}",
                () => new KernelChoices.Entry(Measure(key.Item1, key.Item2, key.Item3, key.Item4, key.Item5), [])).Value);

    static double Measure(ScalarType dtype, int heads, int hd, long w, int rows)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var gen = new Generator(1);
        var q = empty(rows, heads, hd).normal_(0, 1, gen).to(dtype);
        var k = empty(rows, 1, hd).normal_(0, 1, gen).to(dtype);
        var v = empty(rows, 1, hd).normal_(0, 1, gen).to(dtype);
        var keys = empty(rows, w, hd).normal_(0, 1, gen).to(dtype);
        var values = empty(rows, w, hd).normal_(0, 1, gen).to(dtype);
        var mask = zeros(rows, 1, w + 1).expand(rows, heads, w + 1);
        var slots = new long[rows];   // host numbers, not a device read
        for (int i = 0; i < rows; i++) slots[i] = i;
        double scale = 1.0 / Math.Sqrt(hd);
        var ratios = new List<double>();
        for (int r = 0; r < 4; r++)
        {
            double fused = GemvCalibration.TimeMs(() => Forward(q, k, v, keys, values, slots, mask, scale));
            double tensor = GemvCalibration.TimeMs(() =>
            {
                // The tensor path of LocalAttentionBlock.DecodeStep for one run of slots.
                var scores = cat([bmm(q, keys.transpose(1, 2)), bmm(q, k.transpose(1, 2))], -1).mul_(Scalars.Of(scale)).add_(mask, Scalars.One);
                var probs = scores.softmax(-1, ScalarType.Float32).to(dtype);
                return bmm(probs.narrow(-1, 0, w), values).addcmul_(probs.narrow(-1, w, 1), v, Scalars.One);
            });
            if (r > 0) ratios.Add(tensor / fused);
        }
        return GemvCalibration.Median(ratios);
    }
}
