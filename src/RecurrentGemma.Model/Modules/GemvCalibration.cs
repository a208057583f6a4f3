using System.Collections.Concurrent;
using System.Diagnostics;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Times <see cref="SimdGemv"/> against what the model would otherwise run (libtorch, or
/// <see cref="SplitGemv"/> for f32) for one dtype and row count on this machine.
/// </summary>
internal static class GemvCalibration
{
    /// <summary>
    /// Seven rounds over four ~64 MiB weights (250 MiB, beyond the caches, so both read memory as a
    /// decode step does), each round timing libtorch and then the kernels on the same weights; the
    /// decision is the median of the per-round ratios, so a noisy neighbour that slows a whole
    /// round slows both sides of it alike. Each side runs as it runs best: libtorch on every
    /// thread; the kernels with libtorch on one, after its workers have stopped spinning (the
    /// engine's decode steps do this).
    /// </summary>
    public static bool Measure(ScalarType dtype, int rows, ConcurrentDictionary<(ScalarType, int), (double, double)> timings)
        => HandingBack(() => MeasureCore(dtype, rows, timings));

    static bool MeasureCore(ScalarType dtype, int rows, ConcurrentDictionary<(ScalarType, int), (double, double)> timings)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (ws, x) = Inputs(dtype, rows);
        var torchMs = new List<double>();
        var simdMs = new List<double>();
        var ratios = new List<double>();
        int threads = get_num_threads();
        try
        {
            for (int r = 0; r < 8; r++)
            {
                var sw = Stopwatch.StartNew();
                foreach (var w in ws) (SplitGemv.Applies(x, w) ? SplitGemv.Linear(x, w, null) : nn.functional.linear(x, w, null)).Dispose();
                double t = sw.Elapsed.TotalMilliseconds / ws.Length;
                set_num_threads(1);
                Thread.Sleep(5);
                sw.Restart();
                foreach (var w in ws) SimdGemv.Linear(x, w, null).Dispose();
                double s = sw.Elapsed.TotalMilliseconds / ws.Length;
                set_num_threads(threads);
                if (r == 0) continue;   // the first round warms both paths
                torchMs.Add(t);
                simdMs.Add(s);
                ratios.Add(s / t);
            }
        }
        finally
        {
            set_num_threads(threads);
            foreach (var w in ws) SplitGemv.Forget(w);   // its views would hold the test weights until a GC
        }
        timings[(dtype, rows)] = (Median(torchMs), Median(simdMs));
        return Median(ratios) < 1;
    }

    /// <summary>
    /// Two of the kernels' own loops against each other for one dtype and row count (the
    /// AVX512-BF16 dot product against the C# bf16 loops; the row-by-row f32 loop against the
    /// four-row one), rounds as in <see cref="Measure"/>, both with libtorch on one thread;
    /// <paramref name="use"/>(true / false) switches <see cref="SimdGemv"/> to the alternative or
    /// back. Returns each side's median and whether the alternative won.
    /// </summary>
    public static (double DefaultMs, double AlternativeMs, bool AlternativeWins) MeasureAlternative(ScalarType dtype, int rows, Action<bool?> use)
        => HandingBack(() => MeasureAlternativeCore(dtype, rows, use));

    static (double DefaultMs, double AlternativeMs, bool AlternativeWins) MeasureAlternativeCore(ScalarType dtype, int rows, Action<bool?> use)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (ws, x) = Inputs(dtype, rows);
        var defaultMs = new List<double>();
        var alternativeMs = new List<double>();
        var ratios = new List<double>();
        int threads = get_num_threads();
        set_num_threads(1);
        Thread.Sleep(5);
        try
        {
            double Time(bool alternative)
            {
                use(alternative);
                var sw = Stopwatch.StartNew();
                foreach (var w in ws) SimdGemv.Linear(x, w, null).Dispose();
                return sw.Elapsed.TotalMilliseconds / ws.Length;
            }
            for (int r = 0; r < 8; r++)
            {
                double d = Time(false), a = Time(true);
                if (r == 0) continue;   // the first round warms both
                defaultMs.Add(d);
                alternativeMs.Add(a);
                ratios.Add(a / d);
            }
        }
        finally
        {
            use(null);
            set_num_threads(threads);
        }
        return (Median(defaultMs), Median(alternativeMs), Median(ratios) < 1);
    }

    /// <summary>
    /// A many-row GEMM kernel (<see cref="F32Gemm"/> or <see cref="Bf16Gemm"/> by
    /// <paramref name="dtype"/>) against what would run otherwise for <paramref name="rows"/> rows
    /// of x, rounds as in <see cref="Measure"/>: where <see cref="SimdGemv"/> takes that many rows,
    /// its passes, both with libtorch on one thread as in a decode step (both run on the kernel
    /// workers); else, on every thread as a prefill chunk runs, libtorch's GEMM, or for bf16 rows
    /// that <see cref="Bf16Upcast"/> sends to float32, that path. Up to 64 rows (decode batches,
    /// whose steps read every weight from memory once) both run over <see cref="Inputs"/>' four
    /// ~64 MiB weights, beyond the caches; from 128 rows (prefill chunks, where a weight's cost is
    /// its arithmetic) over one [7680, 2560] weight, a 2B projection's shape. With one cached weight
    /// the bf16 kernel had timed 4.5 vs 6.2 ms at 64 rows and then ran a 2B bf16 decode step of 64
    /// sequences slower than libtorch (one process, alternating: 59.6 vs 73.4 tok/s). The caller
    /// decides from the median of the per-round ratios (kernel ÷ other), with a margin.
    /// </summary>
    /// <param name="dtype">The kernel's dtype.</param>
    /// <param name="rows">Rows of x.</param>
    /// <param name="unpacked">Time the kernel's unpacked path (up to <see cref="GemmChoice.UnpackedMaxRows"/> rows) rather than its packed one.</param>
    public static (double OtherMs, double KernelMs, double Ratio) MeasureGemm(ScalarType dtype, int rows, bool unpacked = false)
        => HandingBack(() => MeasureGemmCore(dtype, rows, unpacked));

    static (double OtherMs, double KernelMs, double Ratio) MeasureGemmCore(ScalarType dtype, int rows, bool unpacked)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (ws, x) = rows <= 64 ? Inputs(dtype, rows)
            : ([empty(7680, 2560, dtype).fill_(Scalars.Of(0.01))], empty(rows, 2560, dtype).fill_(Scalars.Of(0.5)));
        bool simd = SimdGemv.Takes(dtype, ws[0].numel(), rows);
        bool upcast = !simd && dtype == ScalarType.BFloat16 && Linear.Upcasts(rows);
        Func<Tensor, Tensor> other = simd ? w => SimdGemv.Linear(x, w, null)
            : upcast ? w => Bf16Upcast.Upcast(x, w, null)
            : w => nn.functional.linear(x, w, null);
        Func<Tensor, Tensor> kernel = w => GemmKernel(x, w, unpacked);
        int threads = get_num_threads();
        if (simd) set_num_threads(1);
        try { return TimeRounds(ws, other, kernel); }
        finally { set_num_threads(threads); }
    }

    /// <summary>
    /// The GEMM kernel of <paramref name="dtype"/> for <see cref="GemmChoice.UnpackedMaxRows"/>
    /// rows of x, packed against unpacked, over <see cref="Inputs"/>' four ~64 MiB weights (rounds
    /// as in <see cref="MeasureGemm"/>). Both give the same bits; the unpacked path skips the pass
    /// that copies each weight block into panels, which a few rows of x cannot repay (the kernels
    /// alone on one thread, AMD EPYC, [7680, 2560], packed vs unpacked medians: bf16 2.68 vs 1.44 ms
    /// at 1 row, 2.87 vs 1.85 at 8, 3.77 vs 3.57 at 16, 4.29 vs 5.39 at 24; f32 4.99 vs 2.65, 5.70
    /// vs 3.58, 7.20 vs 6.05, 8.64 vs 8.29; scripts/gemm-paths.sh, docs/benchmarks.md).
    /// </summary>
    public static (double PackedMs, double UnpackedMs, double Ratio) MeasureUnpacked(ScalarType dtype)
        => HandingBack(() =>
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var (ws, x) = Inputs(dtype, GemmChoice.UnpackedMaxRows);
            return TimeRounds(ws, w => GemmKernel(x, w, unpacked: false), w => GemmKernel(x, w, unpacked: true));
        });

    static Tensor GemmKernel(Tensor x, Tensor w, bool unpacked) =>
        w.dtype == ScalarType.BFloat16 ? Bf16Gemm.Linear(x, w, null, unpacked) : F32Gemm.Linear(x, w, null, unpacked);

    /// <summary>Eight rounds of <paramref name="other"/> then <paramref name="kernel"/> over every weight, the first only warming both: medians of each path's round time and of the per-round ratios (kernel ÷ other).</summary>
    static (double OtherMs, double KernelMs, double Ratio) TimeRounds(Tensor[] ws, Func<Tensor, Tensor> other, Func<Tensor, Tensor> kernel)
    {
        var otherMs = new List<double>();
        var kernelMs = new List<double>();
        var ratios = new List<double>();
        for (int r = 0; r < 8; r++)
        {
            double t = 0, s = 0;
            foreach (var w in ws) t += TimeMs(() => other(w));
            foreach (var w in ws) s += TimeMs(() => kernel(w));
            if (r == 0) continue;   // the first round warms both paths
            otherMs.Add(t);
            kernelMs.Add(s);
            ratios.Add(s / t);
        }
        return (Median(otherMs), Median(kernelMs), Median(ratios));
    }

    /// <summary>
    /// Four ~64 MiB [N, 2560] weights (N = 12800 in bf16, 6400 in f32: 250 MiB, beyond the caches)
    /// and <paramref name="rows"/> rows of x, in the current dispose scope. N is a multiple of 256
    /// like every projection of the models: libtorch's bf16 GEMM at 64 rows ran N = 13107 (64 MiB
    /// exactly) at 364–512 GFLOP/s where N = 12800 and 7680 ran at 508–616, which had made the
    /// bf16 GEMM kernel look faster than libtorch in its timing and not in a step.
    /// </summary>
    static (Tensor[] Weights, Tensor X) Inputs(ScalarType dtype, int rows)
    {
        long k = 2560, n = (64L << 20) / (k * (dtype == ScalarType.BFloat16 ? 2 : 4)) / 256 * 256;
        var ws = new Tensor[4];
        for (int i = 0; i < ws.Length; i++) ws[i] = empty(n, k, dtype).fill_(Scalars.Of(0.01));
        return (ws, empty(rows, k, dtype).fill_(Scalars.One));
    }

    /// <summary>Milliseconds one call takes, its result disposed (<see cref="Bf16Upcast"/> and <see cref="DecodeAttention"/> time with it).</summary>
    /// <summary>Runs a timing and then trims the heap: with it tuned to keep what it frees
    /// (<see cref="MemoryTuning"/>), a timing's test weights would stay resident for good.</summary>
    internal static T HandingBack<T>(Func<T> timing)
    {
        try { return timing(); }
        finally { MemoryTuning.ReleaseFreeMemory(); }
    }

    internal static double TimeMs(Func<Tensor> f)
    {
        var sw = Stopwatch.StartNew();
        f().Dispose();
        return sw.Elapsed.TotalMilliseconds;
    }

    /// <summary>The middle of the sorted timings (sorts in place; <see cref="Bf16Upcast"/> uses it too).</summary>
    internal static double Median(List<double> v)
    {
        v.Sort();
        return v[v.Count / 2];
    }
}
