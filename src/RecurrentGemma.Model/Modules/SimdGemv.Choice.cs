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
    /// bf16 projections through <see cref="Bf16DotKernel"/> (the CPU's bf16 dot-product
    /// instruction; more than four rows of x as passes of at most four over each L2-sized block
    /// of weight rows, as the C# kernels do) instead of the C# kernels: null (the default) where
    /// timing on this machine says it is faster, per bucket of 1, 2–4 and 5–8 rows (beyond, the
    /// same passes as 5–8, without timing them again); true wherever it is available; false never.
    /// </summary>
    public static bool? Bf16Dot { get; set; }

    /// <summary>Whether bf16 projections with this many rows of x take the dot-product kernel now.</summary>
    public static bool UsesBf16Dot(int rows = 1) =>
        !Avx2Only && rows >= 1 && rows <= MaxPassRows
        && DotChoice.Uses(Bf16Dot, BatchInvariance.Enabled ? 1 : Math.Min(Bucket(rows), MaxRows));   // invariant: one kernel for every row count, as one row timed

    /// <summary>
    /// One-row f32 projections through <see cref="GemvKernels.F32RowByRow"/> (one weight row at a
    /// time, no prefetches) instead of the four-row loop: null (the default) where timing on this
    /// machine says it is faster, true / false always / never (tests, comparisons).
    /// </summary>
    public static bool? F32RowByRow { get; set; }

    /// <summary>Whether one-row f32 projections take the row-by-row loop now.</summary>
    public static bool UsesF32RowByRow => Supported && RowByRowChoice.Uses(F32RowByRow, 1);

    static readonly TimedChoice DotChoice = new("bf16-dot", ScalarType.BFloat16, () => Bf16DotKernel.Available);
    static readonly TimedChoice RowByRowChoice = new("f32-row-by-row", ScalarType.Float32, () => true);

    /// <summary>
    /// A loop of the kernels' own timed against the default one, once per bucket of rows of x
    /// (<see cref="GemvCalibration.MeasureAlternative"/>); while it times, it switches itself.
    /// </summary>
    sealed class TimedChoice(string name, ScalarType dtype, Func<bool> available)
    {
        readonly ConcurrentDictionary<int, Lazy<bool>> _decisions = new();
        readonly ConcurrentDictionary<int, (double Default, double Alternative)> _timings = new();
        bool? _calibrating;

        /// <summary>Whether the alternative runs: as <paramref name="asked"/> (true / false), else as timed.</summary>
        public bool Uses(bool? asked, int bucket) => (_calibrating ?? asked) switch
        {
            false => false,
            true => available(),
            null => available() && _decisions.GetOrAdd(bucket, static (b, self) => new Lazy<bool>(() => self.Measure(b)), this).Value,   // no closure per call: every projection asks
        };

        bool Measure(int bucket)
        {
            var e = KernelChoices.Decide($"{name}/x{bucket}", () =>
            {
                var (d, a, wins) = GemvCalibration.MeasureAlternative(dtype, bucket, on => _calibrating = on);
                return new KernelChoices.Entry(wins ? 1 : 0, [d, a]);
            });
            if (e.Timings is [var byDefault, var alternative]) _timings[bucket] = (byDefault, alternative);
            return e.Value != 0;
        }

        public bool Decided(int bucket) => _decisions.ContainsKey(bucket);

        /// <summary>"winner (alternative x vs default y ms)" for one bucket, timing it first if need be.</summary>
        public string Describe(int bucket, string alternative, string byDefault)
        {
            bool wins = Uses(null, bucket);
            var (d, a) = _timings.GetValueOrDefault(bucket);
            return string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{(wins ? alternative : byDefault)} ({alternative} {a:F2} vs {byDefault} {d:F2} ms)");
        }
    }

    /// <summary>Row counts timed together against libtorch: 1; 2–4 (one pass); 5–8 (two passes per block); 9–16; 17–32.</summary>
    static int Bucket(int rows) => rows <= 1 ? 1 : rows <= 4 ? 4 : rows <= 8 ? 8 : rows <= 16 ? 16 : 32;

    static readonly int[] Buckets = [1, 4, 8, 16, 32];

    static readonly ConcurrentDictionary<(ScalarType, int), Lazy<bool>> Decisions = new();
    static readonly ConcurrentDictionary<(ScalarType, int), (double, double)> _timings = new();

    /// <summary>Whether the kernels beat libtorch for this dtype and row count on this machine (timed once per process).</summary>
    public static bool Wins(ScalarType dtype, int rows = 1) =>
        Decisions.GetOrAdd((dtype, Bucket(rows)), key => new Lazy<bool>(() => Decide(key.Item1, key.Item2))).Value;

    /// <summary>Timed, or read from the decisions kept for this machine (<see cref="KernelChoices"/>).</summary>
    static bool Decide(ScalarType dtype, int bucket)
    {
        var e = KernelChoices.Decide($"simd-gemv/{KernelChoices.Name(dtype)}/x{bucket}", () =>
        {
            bool wins = GemvCalibration.Measure(dtype, bucket, _timings);
            var (t, s) = _timings[(dtype, bucket)];
            return new KernelChoices.Entry(wins ? 1 : 0, [t, s]);
        });
        if (e.Timings is [var torch, var simd]) _timings[(dtype, bucket)] = (torch, simd);
        return e.Value != 0;
    }

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
        var head = parts.Count == 0
            ? "SIMD GEMV against libtorch not yet timed (no small-batch projection large enough so far, or batch invariance gave them to the kernels untimed)"
            : "SIMD GEMV per dtype × rows of x, kernels vs libtorch per ~64 MiB weight: " + string.Join(", ", parts);
        return head + "; f32×1 loop " + DescribeRowByRow(decide) + "; bf16 kernel (AVX512-BF16 dot product or C# loop) " + DescribeDot(decide);
    }

    static string DescribeRowByRow(bool decide)
    {
        if (F32RowByRow is { } forced) return forced ? "row by row (asked for)" : "four rows per pass (asked for)";
        return !decide && !RowByRowChoice.Decided(1) ? "not yet timed" : RowByRowChoice.Describe(1, "row by row", "four rows per pass");
    }

    static string DescribeDot(bool decide)
    {
        if (Avx2Only) return "AVX2 loop (asked for)";
        if (!Bf16DotKernel.Available) return $"C# loops (dot-product kernel unavailable: {Bf16DotKernel.Status})";
        if (Bf16Dot is { } forced) return forced ? "AVX512-BF16 dot product (asked for)" : "C# loops (asked for)";
        var parts = Buckets.Where(b => b <= Math.Min(RowsSupported, MaxRows) && (decide || DotChoice.Decided(b)))   // timed up to 8 rows
            .Select(b => $"×{b} " + DotChoice.Describe(b, "dot product", "C# loop")).ToList();
        return parts.Count == 0 ? "dot product vs C# loops not yet timed" : string.Join(", ", parts);
    }
}
