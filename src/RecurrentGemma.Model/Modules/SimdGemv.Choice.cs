using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Which kernel <see cref="SimdGemv"/> runs, decided by timing on this machine the first time it
/// matters and never by CPU model: the kernels or libtorch, per dtype and bucket of rows of x
/// (<see cref="GemvCalibration.Measure"/>); for bf16, the AVX512-BF16 dot-product
/// kernel or the C# loops, and for f32 with one row, the row-by-row loop or the four-row one
/// (<see cref="GemvCalibration.MeasureAlternative"/>); and what was decided, for the start-up log
/// and the benchmark headers.
/// </summary>
public static partial class SimdGemv
{
    /// <summary>
    /// bf16 projections of 1–8 rows of x through <see cref="Bf16DotKernel"/> (the CPU's bf16
    /// dot-product instruction; 5–8 rows as two passes of at most four over each L2-sized block of
    /// weight rows, as the C# kernels do) instead of the C# kernels: null (the default) where
    /// timing on this machine says it is faster, per row bucket; true wherever it is available;
    /// false never.
    /// </summary>
    public static bool? Bf16Dot { get; set; }

    /// <summary>Whether bf16 projections with this many rows of x take the dot-product kernel now.</summary>
    public static bool UsesBf16Dot(int rows = 1) =>
        !Avx2Only && rows >= 1 && rows <= RowsSupported
        && (_calibratingDot ?? Bf16Dot) switch
        {
            false => false,
            true => Bf16DotKernel.Available,
            null => Bf16DotKernel.Available && DotDecisions.GetOrAdd(Bucket(rows), DecideDot).Value,
        };

    static bool? _calibratingDot;
    static readonly ConcurrentDictionary<int, Lazy<bool>> DotDecisions = new();
    static readonly ConcurrentDictionary<int, (double Vector, double Dot)> _dotTimings = new();
    static Lazy<bool> DecideDot(int bucket) => new(() =>
    {
        var (vector, dot, wins) = GemvCalibration.MeasureAlternative(ScalarType.BFloat16, bucket, on => _calibratingDot = on);
        _dotTimings[bucket] = (vector, dot);
        return wins;
    });

    /// <summary>
    /// One-row f32 projections through <see cref="GemvKernels.F32RowByRow"/> (one weight row at a
    /// time, no prefetches) instead of the four-row loop: null (the default) where timing on this
    /// machine says it is faster, true / false always / never (tests, comparisons).
    /// </summary>
    public static bool? F32RowByRow { get; set; }

    /// <summary>Whether one-row f32 projections take the row-by-row loop now.</summary>
    public static bool UsesF32RowByRow =>
        Supported && (_calibratingRowByRow ?? F32RowByRow ?? RowByRowDecision.Value);

    static bool? _calibratingRowByRow;
    static (double Grouped, double RowByRow) _rowByRowTimings;
    static readonly Lazy<bool> RowByRowDecision = new(() =>
    {
        var (grouped, rowByRow, wins) = GemvCalibration.MeasureAlternative(ScalarType.Float32, 1, on => _calibratingRowByRow = on);
        _rowByRowTimings = (grouped, rowByRow);
        return wins;
    });

    /// <summary>Row counts timed together: 1; 2–4 (one pass); 5–8 (two passes per block).</summary>
    static int Bucket(int rows) => rows <= 1 ? 1 : rows <= 4 ? 4 : 8;

    static readonly int[] Buckets = [1, 4, 8];

    static readonly ConcurrentDictionary<(ScalarType, int), Lazy<bool>> Decisions = new();
    static readonly ConcurrentDictionary<(ScalarType, int), (double, double)> _timings = new();

    /// <summary>Whether the kernels beat libtorch for this dtype and row count on this machine (timed once per process).</summary>
    public static bool Wins(ScalarType dtype, int rows = 1) =>
        Decisions.GetOrAdd((dtype, Bucket(rows)), key => new Lazy<bool>(() => GemvCalibration.Measure(key.Item1, key.Item2, _timings))).Value;

    /// <summary>
    /// What was decided so far, with the timings it was decided by (start-up log, benchmark
    /// headers); <paramref name="decide"/> first times every dtype and row count not yet timed.
    /// </summary>
    public static string Describe(bool decide = false)
    {
        if (!Supported) return "SIMD GEMV unsupported on this CPU";
        if (!Enabled) return "SIMD GEMV off";
        if (Forced) return "SIMD GEMV forced on";
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        var parts = new List<string>();
        foreach (var (dtype, name) in new[] { (ScalarType.Float32, "f32"), (ScalarType.BFloat16, "bf16") })
            foreach (int bucket in Buckets.Where(b => b <= RowsSupported))
            {
                if (!decide && !Decisions.ContainsKey((dtype, bucket))) continue;
                bool wins = Wins(dtype, bucket);
                var (t, s) = _timings.GetValueOrDefault((dtype, bucket));
                parts.Add(string.Create(ci, $"{name}×{bucket} {(wins ? "on" : "off")} ({s:F2} vs {t:F2} ms)"));
            }
        if (parts.Count == 0) return "SIMD GEMV not yet timed (no small-batch projection large enough so far)";
        return "SIMD GEMV per dtype × rows of x, kernels vs libtorch per 64 MiB weight: " + string.Join(", ", parts)
            + "; f32×1 loop " + DescribeRowByRow(decide) + "; bf16 kernel " + DescribeDot(decide);
    }

    static string DescribeRowByRow(bool decide)
    {
        if (F32RowByRow is { } forced) return forced ? "row by row (asked for)" : "four rows per pass (asked for)";
        if (!decide && !RowByRowDecision.IsValueCreated) return "not yet timed";
        bool wins = RowByRowDecision.Value;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{(wins ? "row by row" : "four rows per pass")} (row by row {_rowByRowTimings.RowByRow:F2} vs four rows {_rowByRowTimings.Grouped:F2} ms)");
    }

    static string DescribeDot(bool decide)
    {
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        if (Avx2Only) return "AVX2 loop (asked for)";
        if (!Bf16DotKernel.Available) return $"C# loops (dot-product kernel unavailable: {Bf16DotKernel.Status})";
        if (Bf16Dot is { } forced) return forced ? "AVX512-BF16 dot product (asked for)" : "C# loops (asked for)";
        var parts = new List<string>();
        foreach (int bucket in Buckets.Where(b => b <= RowsSupported))
        {
            if (!decide && !DotDecisions.ContainsKey(bucket)) continue;
            bool wins = UsesBf16Dot(bucket);
            var (vector, dot) = _dotTimings.GetValueOrDefault(bucket);
            parts.Add(string.Create(ci, $"×{bucket} {(wins ? "AVX512-BF16 dot product" : "C# loop")} (dot {dot:F2} vs C# {vector:F2} ms)"));
        }
        return parts.Count == 0 ? "dot product vs C# loops not yet timed" : string.Join(", ", parts);
    }
}
