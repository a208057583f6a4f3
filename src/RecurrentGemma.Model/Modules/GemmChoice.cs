using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Where one of the model's own many-row GEMM kernels (<see cref="F32Gemm"/>, <see cref="Bf16Gemm"/>)
/// runs: per bucket of rows of x, timed once per process against what would run otherwise
/// (<see cref="GemvCalibration.MeasureGemm"/>), never chosen by CPU model. Row counts are decided
/// together: 17–32 (timed at 24 against what takes them otherwise, usually <see cref="SimdGemv"/>'s
/// passes), 33–127 (decode batches, short chunks; timed at 64) and 128 or more (prefill chunks;
/// timed at 256). The kernel takes the work only when it ran in at most <paramref name="margin"/>
/// of the other path's time (median of the per-round ratios) — <paramref name="prefillMargin"/>
/// for the 128-or-more bucket where given: in a tie, the path that served before the kernel
/// existed keeps it.
/// </summary>
internal sealed class GemmChoice(ScalarType dtype, double margin, double? prefillMargin = null)
{
    static readonly int[] Buckets = [24, 64, 256];

    /// <summary>What the timings in <see cref="Timings"/> ran on (<see cref="GemvCalibration.MeasureGemm"/>).</summary>
    public const string Shapes = "×24 and ×64 summed over four ~64 MiB [N, 2560] weights, ×256 on one [2560, 7680]ᵀ";

    readonly ConcurrentDictionary<int, Lazy<bool>> _decisions = new();
    readonly ConcurrentDictionary<int, (double Other, double Kernel)> _timings = new();

    /// <summary>Most rows of x the kernels' unpacked path takes in one pass of the weight (the C code's DR).</summary>
    public const int UnpackedMaxRows = 16;

    readonly Lazy<KernelChoices.Entry> _unpacked = new(() => KernelChoices.Decide($"gemm/{KernelChoices.Name(dtype)}/unpacked", () =>
    {
        var (packedMs, unpackedMs, ratio) = GemvCalibration.MeasureUnpacked(dtype);
        return new KernelChoices.Entry(ratio < 1 ? 1 : 0, [packedMs, unpackedMs, ratio]);
    }));

    /// <summary>
    /// Whether this many rows of x (at most <see cref="UnpackedMaxRows"/>) go through the kernel's
    /// unpacked path. Only a row-exact forward (<see cref="RowExactGemm"/>) sends the kernel so
    /// few rows: a short prompt alone, seeded or a lone short chunk. Both paths give every output
    /// the same bits, so only speed is at stake: timed once per process (packed against unpacked
    /// at 16 rows, where unpacking gains least), taken when faster.
    /// </summary>
    public bool Unpacks(long rows) => rows <= UnpackedMaxRows && _unpacked.Value.Value != 0;

    /// <summary>Fewest tokens of a lone prompt chunk that may go through a row-exact forward for speed (<see cref="RowExactGemm.TakesLoneChunk"/>).</summary>
    public const int LoneChunkMinRows = 8;

    readonly Lazy<KernelChoices.Entry> _loneChunk = new(() => KernelChoices.Decide($"gemm/{KernelChoices.Name(dtype)}/unpacked-x{LoneChunkMinRows}", () =>
    {
        var (otherMs, unpackedMs, ratio) = GemvCalibration.MeasureGemm(dtype, LoneChunkMinRows, unpacked: true);
        return new KernelChoices.Entry(ratio <= 0.95 ? 1 : 0, [otherMs, unpackedMs, ratio]);
    }));

    /// <summary>
    /// Whether the unpacked kernel at <see cref="LoneChunkMinRows"/> rows of x ran at least 5 %
    /// faster than the small-batch passes that take so few rows otherwise (timed once per
    /// process, over the four ~64 MiB weights): then a lone prompt chunk of 8–16 tokens is worth
    /// a row-exact forward. Through the engine on the AMD EPYC (2B, a prompt alone, row-exact
    /// against a forward of its own): bf16 8 tokens 0.16 vs 0.20 s, 12 tokens 0.19 vs 0.23, 16
    /// tokens 0.27 vs 0.32; f32 0.32 vs 0.42, 0.36 vs 0.55, 0.48 vs 0.69 — but at 1–4 tokens f32
    /// level or slower (0.28–0.32 vs 0.25–0.28 s), hence no fewer than 8.
    /// </summary>
    public bool LoneChunkWins => _loneChunk.Value.Value != 0;

    /// <summary>"unpacked for ≤ 16 rows of x on (kernel vs packed ms)", and the lone-chunk choice once timed (or when <paramref name="decide"/>); null before.</summary>
    public string? UnpackedTiming(bool decide)
    {
        if (!decide && !_unpacked.IsValueCreated) return null;
        var text = Timed(_unpacked.Value, $"unpacked for ≤ {UnpackedMaxRows} rows of x", "packed");
        return !decide && !_loneChunk.IsValueCreated ? text
            : text + "; " + Timed(_loneChunk.Value, $"lone prompt chunks of {LoneChunkMinRows}–{UnpackedMaxRows} tokens row-exact", $"the small-batch passes at {LoneChunkMinRows} rows");
    }

    static string Timed(KernelChoices.Entry e, string what, string against) => e.Timings is [var other, var kernel, ..]
        ? FormattableString.Invariant($"{what} {(e.Value != 0 ? "on" : "off")} ({kernel:F1} vs {other:F1} ms {against})")
        : $"{what} {(e.Value != 0 ? "on" : "off")}";

    /// <summary>
    /// Rows of x (0: none) when a GEMM kernel of this dtype can take x·Wᵀ + b: a 2-D CPU weight of
    /// at least <see cref="SimdGemv.MinElements"/> with packed rows (and a whole number of
    /// <paramref name="unit"/>-element units per row), x and the bias in the same dtype, x's rows
    /// unit-stride, at least <paramref name="minRows"/> of them.
    /// </summary>
    public static long Rows(Tensor x, Tensor weight, Tensor? bias, ScalarType dtype, int minRows, int unit = 1)
    {
        if (!CpuPaths.On(weight) || weight.dim() != 2 || weight.dtype != dtype || x.dtype != dtype) return 0;
        long k = weight.size(1);
        if (k % unit != 0 || x.size(-1) != k || weight.numel() < SimdGemv.MinElements) return 0;
        long rows = x.numel() / k;
        if (rows < minRows || weight.stride(1) != 1 || weight.stride(0) != k || SimdGemv.RowStride(x) < k) return 0;
        if (bias is not null && (bias.dtype != dtype || !bias.is_contiguous())) return 0;
        return rows;
    }

    static int Bucket(long rows) => rows <= SimdGemv.MaxPassRows ? 24 : rows < 128 ? 64 : 256;

    /// <summary>Whether the kernel beats the other path for this many rows of x on this machine (timed on first use of the bucket).</summary>
    public bool Wins(long rows) =>
        _decisions.GetOrAdd(Bucket(rows), b => new Lazy<bool>(() =>
        {
            var e = KernelChoices.Decide($"gemm/{KernelChoices.Name(dtype)}/x{b}", () =>
            {
                var (otherMs, kernelMs, ratio) = GemvCalibration.MeasureGemm(dtype, b);
                return new KernelChoices.Entry(ratio <= (b == 256 ? prefillMargin ?? margin : margin) ? 1 : 0, [otherMs, kernelMs, ratio]);
            });
            if (e.Timings is [var other, var kernel, ..]) _timings[b] = (other, kernel);
            return e.Value != 0;
        })).Value;

    /// <summary>"×24 on (kernel vs other ms), …" for the buckets timed so far (all of them when <paramref name="decide"/>); null when none.</summary>
    public string? Timings(bool decide)
    {
        var parts = new List<string>();
        foreach (int bucket in Buckets)
        {
            if (!decide && !_decisions.ContainsKey(bucket)) continue;
            bool wins = Wins(bucket);
            var (other, kernel) = _timings.GetValueOrDefault(bucket);
            parts.Add(FormattableString.Invariant($"×{bucket} {(wins ? "on" : "off")} ({kernel:F1} vs {other:F1} ms)"));
        }
        return parts.Count == 0 ? null : string.Join(", ", parts);
    }
}
