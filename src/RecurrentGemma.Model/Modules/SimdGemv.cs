using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Batch-1 projections (one row of x) on the CPU through <see cref="GemvKernels"/>, split by
/// output rows over every core. A batch-1 decode step is a single pass over the weights, and
/// libtorch's matrix–vector path streams them well below memory speed on the machines measured
/// (2B: ~18 GB/s bf16, ~31 GB/s f32 against ~60 GB/s that two cores can read; docs/benchmarks.md).
/// Whether it is used is decided per dtype by timing it against libtorch on this machine the
/// first time a large enough weight comes by (<see cref="Wins"/>), never by CPU model.
/// The kernels run on .NET's thread pool, so they want libtorch on one thread around them: its
/// OpenMP workers spin for a while after each op and would take the cores (the engine's
/// ThreadCalibration times exactly that choice).
/// </summary>
public static unsafe class SimdGemv
{
    /// <summary>Below this many weight elements the split and the call cost more than they save.</summary>
    public static long MinElements { get; set; } = 1 << 20;

    /// <summary>True where the CPU has 512-bit, or 256-bit with FMA, vectors the kernels are written for.</summary>
    public static bool Supported => GemvKernels.Has512 || GemvKernels.Has256;

    /// <summary>Off switch for benchmarks and comparisons.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Skips the timing and uses the kernels for every dtype they handle (tests).</summary>
    public static bool Forced { get; set; }

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);

    public static bool Applies(Tensor x, Tensor weight, Tensor? bias)
    {
        if (!Enabled || !Supported || weight.device_type != DeviceType.CPU || weight.dim() != 2) return false;
        var dtype = weight.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || x.dtype != dtype) return false;
        long k = weight.shape[1];
        if (x.shape[^1] != k || x.numel() != k || weight.numel() < MinElements) return false;
        if (weight.stride(1) != 1 || weight.stride(0) != k || !x.is_contiguous()) return false;
        if (bias is not null && (bias.dtype != dtype || !bias.is_contiguous())) return false;
        return Forced || Wins(dtype);
    }

    /// <summary>x·Wᵀ + b for one row of x: [.., K] → [.., N] in x's dtype (bf16 rounded once, from float32 sums).</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        long start = Stopwatch.GetTimestamp();
        long n = weight.shape[0], k = weight.shape[1];
        var shape = (long[])x.shape.Clone();   // host metadata only: this path never runs on a GPU
        shape[^1] = n;
        var y = empty(shape, x.dtype, x.device);
        Run(x, weight, bias, y, n, k);
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
        Interlocked.Add(ref _bytes, n * k * weight.ElementSize);
        return y;
    }

    static long _ticks, _bytes;

    /// <summary>Time spent in, and weight bytes streamed by, the kernels so far in this process (profiling).</summary>
    public static (TimeSpan Elapsed, long WeightBytes) Totals =>
        (Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _ticks)), Interlocked.Read(ref _bytes));

    static void Run(Tensor x, Tensor weight, Tensor? bias, Tensor y, long n, long k)
    {
        void* w = (void*)THSTensor_data(weight.Handle);
        void* xp = (void*)THSTensor_data(x.Handle);
        void* yp = (void*)THSTensor_data(y.Handle);
        void* bp = bias is null ? null : (void*)THSTensor_data(bias.Handle);
        bool bf16 = weight.dtype == ScalarType.BFloat16;

        float[] sums = ArrayPool<float>.Shared.Rent((int)n + (bf16 ? (int)k + 2 : 0));
        try
        {
            fixed (float* s = sums)
            {
                float* xEven = s + n, xOdd = xEven + (k + 1) / 2;
                if (bf16)
                {
                    var xs = (ushort*)xp;
                    for (long i = 0; i < k; i++) ((i & 1) == 0 ? xEven : xOdd)[i / 2] = GemvKernels.ToFloat(xs[i]);
                }
                // Parts of whole row groups; the calling thread takes one of them (Parallel.For).
                int parts = (int)Math.Clamp(n / 256, 1, Environment.ProcessorCount);
                long size = (n / parts + 3) & ~3L;
                float* sp = s, xe = xEven, xo = xOdd, xf = (float*)xp;
                void Part(int p)
                {
                    long n0 = p * size, n1 = Math.Min(n, n0 + size);
                    if (bf16) GemvKernels.Bf16((ushort*)w, k, xe, xo, sp, n0, n1);
                    else GemvKernels.F32((float*)w, k, xf, sp, n0, n1);
                }
                if (parts == 1) Part(0);
                else Parallel.For(0, parts, Part);

                if (bf16)
                {
                    var yo = (ushort*)yp;
                    var b = (ushort*)bp;
                    for (long i = 0; i < n; i++) yo[i] = GemvKernels.ToBf16(b is null ? s[i] : s[i] + GemvKernels.ToFloat(b[i]));
                }
                else
                {
                    var yo = (float*)yp;
                    var b = (float*)bp;
                    for (long i = 0; i < n; i++) yo[i] = b is null ? s[i] : s[i] + b[i];
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(sums);
        }
    }

    static readonly Lazy<bool> F32Wins = new(() => Measure(ScalarType.Float32));
    static readonly Lazy<bool> Bf16Wins = new(() => Measure(ScalarType.BFloat16));

    /// <summary>Whether the kernels beat libtorch for this dtype on this machine (timed once per process).</summary>
    public static bool Wins(ScalarType dtype) => dtype == ScalarType.BFloat16 ? Bf16Wins.Value : F32Wins.Value;

    /// <summary>Last timing per dtype (ms per 64 MiB: libtorch, kernels, medians), for the start-up log and the bench.</summary>
    public static IReadOnlyDictionary<ScalarType, (double Torch, double Simd)> Timings => _timings;
    static readonly System.Collections.Concurrent.ConcurrentDictionary<ScalarType, (double, double)> _timings = new();

    /// <summary>
    /// Seven rounds over four 64 MiB weights (256 MiB, beyond the caches, so both read memory as a
    /// decode step does), each round timing libtorch and then the kernels on the same weights; the
    /// decision is the median of the per-round ratios, so a noisy neighbour that slows a whole
    /// round slows both sides of it alike.
    /// </summary>
    static bool Measure(ScalarType dtype)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long k = 2560, n = (64L << 20) / (k * (dtype == ScalarType.BFloat16 ? 2 : 4));
        var ws = new Tensor[4];
        for (int i = 0; i < ws.Length; i++) ws[i] = empty(n, k, dtype).fill_(Scalars.Of(0.01));
        var x = empty(1, k, dtype).fill_(Scalars.One);
        var torchMs = new List<double>();
        var simdMs = new List<double>();
        var ratios = new List<double>();
        int threads = get_num_threads();
        try
        {
            for (int r = 0; r < 8; r++)
            {
                // Each side as it runs best: libtorch on every thread; the kernels with libtorch on
                // one, after its workers have stopped spinning (the engine's decode steps do this).
                var sw = Stopwatch.StartNew();
                foreach (var w in ws) nn.functional.linear(x, w, null).Dispose();
                double t = sw.Elapsed.TotalMilliseconds / ws.Length;
                set_num_threads(1);
                Thread.Sleep(5);
                sw.Restart();
                foreach (var w in ws) Linear(x, w, null).Dispose();
                double s = sw.Elapsed.TotalMilliseconds / ws.Length;
                set_num_threads(threads);
                if (r == 0) continue;   // the first round warms both paths
                torchMs.Add(t);
                simdMs.Add(s);
                ratios.Add(s / t);
            }
        }
        finally { set_num_threads(threads); }
        _timings[dtype] = (Median(torchMs), Median(simdMs));
        return Median(ratios) < 1;
    }

    /// <summary>
    /// What was decided for the dtypes decided so far, with the timings it was decided by (start-up
    /// log, benchmark headers); <paramref name="decide"/> times the dtypes not yet timed.
    /// </summary>
    public static string Describe(bool decide = false)
    {
        if (!Supported) return "SIMD GEMV unsupported on this CPU";
        if (!Enabled) return "SIMD GEMV off";
        if (Forced) return "SIMD GEMV forced on";
        var parts = new List<string>();
        foreach (var (dtype, name, lazy) in new[] { (ScalarType.Float32, "f32", F32Wins), (ScalarType.BFloat16, "bf16", Bf16Wins) })
        {
            if (!lazy.IsValueCreated && !decide) continue;
            bool wins = lazy.Value;   // times it now when asked to decide
            var (t, s) = _timings.GetValueOrDefault(dtype);
            parts.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"{name} {(wins ? "on" : "off")} ({s:F2} vs libtorch {t:F2} ms per 64 MiB)"));
        }
        return parts.Count == 0 ? "SIMD GEMV not yet timed (no batch-1 projection large enough so far)" : "SIMD GEMV " + string.Join(", ", parts);
    }

    static double Median(List<double> v)
    {
        v.Sort();
        return v[v.Count / 2];
    }
}
