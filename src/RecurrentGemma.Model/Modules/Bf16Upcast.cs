using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Whether a bf16 matmul of many rows (prefill chunks, large batches) runs faster on the CPU as
/// float32 on up-cast copies — decided by timing both on this machine, never by CPU flags. A CPU
/// that lists AVX512_BF16 may still run libtorch's bf16 GEMM slower than its f32 GEMM: on a 2-core
/// Intel Xeon with AVX512_BF16 and no AMX, [512, 2560]·[2560, 7680] took ~140 GFLOP/s in bf16 and
/// ~180–240 in f32 (2B bf16 prefill 25–32 tok/s, f32 37–41); on the 2-core AMD machine bf16 was
/// the faster one; on CPUs without bf16 units bf16 GEMM is ~7× slower than f32 (docs/platform.md).
/// The answer is a row count from which up-casting wins (128 or 512), or none.
/// </summary>
public static class Bf16Upcast
{
    /// <summary>
    /// Row counts timed, on a [7680, 2560] weight (a 2B projection's shape): prefill-chunk sizes,
    /// where the up-cast copy of the weight is paid once for many rows. Not decode batches: a
    /// timing loop keeps its weight in cache, while a decode step streams every weight from
    /// memory, so a 64-row timing that favoured the up-cast (cached) took 2B bf16 decode at 64
    /// sequences from 21.8 to 8.4 tok/s on the Xeon.
    /// </summary>
    static readonly int[] Rows = [128, 512];

    static readonly Lazy<(long FromRows, string Summary)> Decision = new(() =>
    {
        var e = KernelChoices.Decide("bf16-upcast/from-rows", () =>
        {
            var (from, summary) = GemvCalibration.HandingBack(Measure);
            return new KernelChoices.Entry(from == long.MaxValue ? -1 : from, [], summary);
        });
        return (e.Value < 0 ? long.MaxValue : (long)e.Value, e.Summary ?? "");
    });

    /// <summary>Rows of x from which a CPU bf16 matmul is up-cast (long.MaxValue: never).</summary>
    public static long FromRows => Decision.Value.FromRows;

    /// <summary>The decision with the timings it was made from (start-up log, benchmark headers).</summary>
    public static string Describe() => Decision.Value.Summary;

    /// <summary>
    /// The smallest timed row count from which up-casting won at it and every larger count
    /// (median of per-round ratios below 0.95, so a tie keeps native bf16).
    /// </summary>
    public static long Choose(IReadOnlyList<(int Rows, double Ratio)> upcastOverNative)
    {
        long from = long.MaxValue;
        foreach (var (rows, ratio) in upcastOverNative.OrderByDescending(r => r.Rows))
        {
            if (ratio >= 0.95) break;
            from = rows;
        }
        return from;
    }

    static (long, string) Measure()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var w = empty(7680, 2560, ScalarType.BFloat16).fill_(Scalars.Of(0.01));
        var ratios = new List<(int, double)>();
        var parts = new List<string>();
        foreach (int rows in Rows)
        {
            var x = empty(rows, 2560, ScalarType.BFloat16).fill_(Scalars.Of(0.5));
            var native = new List<double>();
            var upcast = new List<double>();
            var perRound = new List<double>();
            for (int r = 0; r < 4; r++)   // the first round warms both paths
            {
                double n = GemvCalibration.TimeMs(() => nn.functional.linear(x, w, null));
                double u = GemvCalibration.TimeMs(() => Upcast(x, w, null));
                if (r == 0) continue;
                native.Add(n); upcast.Add(u); perRound.Add(u / n);
            }
            double ratio = GemvCalibration.Median(perRound);
            ratios.Add((rows, ratio));
            parts.Add(FormattableString.Invariant($"{rows} rows {GemvCalibration.Median(native):F1} vs {GemvCalibration.Median(upcast):F1} ms"));
        }
        long from = Choose(ratios);
        string verdict = from == long.MaxValue ? "native bf16 matmuls" : $"bf16 matmuls of {from}+ rows up-cast to float32";
        return (from, $"{verdict} (native vs up-cast on [rows, 2560]·[2560, 7680]: {string.Join(", ", parts)})");
    }

    /// <summary>
    /// x·Wᵀ + b computed in float32 on up-cast copies (through <see cref="F32Gemm"/> where it wins,
    /// so the timing above compares native bf16 with the best float32 path), rounded back to bf16 once.
    /// </summary>
    internal static Tensor Upcast(Tensor x, Tensor weight, Tensor? bias)
    {
        using var scope = NewDisposeScope();
        var (xf, wf, bf) = (x.to(ScalarType.Float32), weight.to(ScalarType.Float32), bias?.to(ScalarType.Float32));
        var y = F32Gemm.Applies(xf, wf, bf) ? F32Gemm.Linear(xf, wf, bf) : nn.functional.linear(xf, wf, bf);
        return y.to(ScalarType.BFloat16).MoveToOuterDisposeScope();
    }
}
