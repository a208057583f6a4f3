using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// float32 projections of many rows of x (prefill chunks, large decode batches) through the model's own AVX-512 GEMM (Native/gemm_f32.c,
/// machine code in <see cref="F32GemmCode"/>, mapped by <see cref="NativeCode"/>), split by
/// weight rows over every core (<see cref="KernelWorkers"/>). On the 2-core AMD EPYC libtorch's
/// float32 GEMM ran at ~150–160 GFLOP/s where the CPU's FMAs allow ~400 (its BLAS does not take
/// the 512-bit path there), which capped a 2B f32 prefill near 40 tokens/s; the kernel ran the
/// same shapes at ~340 (docs/benchmarks.md). Offered only where the CPU has AVX-512 and the mapped
/// code reproduced exact sums, and used only where timing on this machine says it beats what
/// would run otherwise (per bucket of rows, <see cref="Wins"/>), never by CPU model.
/// </summary>
public static unsafe class F32Gemm
{
    static readonly Lazy<(nint Entry, string Status)> Loaded = new(Load);

    /// <summary>True when the kernel is mapped and passed its self-check.</summary>
    public static bool Available => Loaded.Value.Entry != 0;

    /// <summary>Why it is or is not available (start-up log, benchmark headers).</summary>
    public static string Status => Loaded.Value.Status;

    /// <summary>Off switch for benchmarks and comparisons.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Skips the timing and uses the kernel wherever it applies (tests).</summary>
    public static bool Forced { get; set; }

    /// <summary>
    /// Fewest rows of x it takes: fewer go through <see cref="SimdGemv"/>'s passes, which need no
    /// packing (a C harness at 16 rows: ~125 GFLOP/s either way). From here to
    /// <see cref="SimdGemv.MaxPassRows"/> it is timed against those passes, beyond against libtorch.
    /// </summary>
    public const int MinRows = 17;

    /// <summary>Weight rows per part of a call (the kernel's NC: one packed block per part).</summary>
    const long PartRows = 256;

    /// <summary>Floats of one thread's pack buffer (the kernel's NC × KC).</summary>
    const int PackFloats = 256 * 256;

    public static bool Applies(Tensor x, Tensor weight, Tensor? bias)
    {
        long rows = Enabled ? GemmChoice.Rows(x, weight, bias, ScalarType.Float32, MinRows) : 0;
        return rows > 0 && Available && (Forced || Wins(rows));
    }

    /// <summary>x·Wᵀ + b: [.., K] → [.., N], float32, any number of rows of x (the caller checks <see cref="Applies"/> or <see cref="Available"/>).</summary>
    /// <param name="x">Rows of input, [.., K].</param>
    /// <param name="weight">The projection, [N, K], row-major.</param>
    /// <param name="bias">Added to every row, [N], or null.</param>
    /// <param name="unpacked">Whether to skip packing the weight (same bits); null: the timed choice for a few rows of x (<see cref="GemmChoice.Unpacks"/>).</param>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias, bool? unpacked = null)
    {
        var entry = Loaded.Value.Entry;
        if (entry == 0) throw new InvalidOperationException("the f32 GEMM kernel is not available: " + Status);
        long start = Stopwatch.GetTimestamp();
        long n = weight.size(0), k = weight.size(1);
        var shape = x.shape;   // a fresh array on every call (ours to change); host metadata only: this path never runs on a GPU
        shape[^1] = n;
        var y = empty(shape, ScalarType.Float32, x.device);
        long rows = x.numel() / k, xs = SimdGemv.RowStride(x);
        var w = (float*)SimdGemv.Data(weight);
        var xp = (float*)SimdGemv.Data(x);
        var yp = (float*)SimdGemv.Data(y);
        var bp = bias is null ? null : (float*)SimdGemv.Data(bias);
        bool direct = unpacked ?? Choice.Unpacks(rows);
        int parts = (int)((n + PartRows - 1) / PartRows);
        KernelWorkers.Run(parts, p =>
        {
            long n0 = p * PartRows, n1 = Math.Min(n, n0 + PartRows);
            if (direct) Call(entry, w, k, xp, xs, rows, bp, yp, n, n0, n1, null);   // no pack buffer: the unpacked path
            else
                fixed (float* pack = _pack ??= GC.AllocateUninitializedArray<float>(PackFloats, pinned: true))
                    Call(entry, w, k, xp, xs, rows, bp, yp, n, n0, n1, pack);
        });
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
        return y;
    }

    [ThreadStatic] static float[]? _pack;
    static long _ticks;

    /// <summary>Time spent in the kernel so far in this process (profiling).</summary>
    public static TimeSpan Elapsed => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _ticks));

    static void Call(nint entry, float* w, long k, float* x, long xs, long m, float* bias, float* y, long ys, long n0, long n1, float* pack) =>
        ((delegate* unmanaged<float*, long, float*, long, long, float*, float*, long, long, long, float*, void>)entry)(w, k, x, xs, m, bias, y, ys, n0, n1, pack);

    /// <summary>Takes the work from 5 % faster: on the AMD EPYC it ran 1.3–2.4× faster in its timings (docs/benchmarks.md).</summary>
    static readonly GemmChoice Choice = new(ScalarType.Float32, margin: 0.95);

    /// <summary>Its timed decisions (<see cref="RowExactGemm"/> reads the unpacked path's).</summary>
    internal static GemmChoice Choices => Choice;

    /// <summary>Whether the kernel beats the other path for this many rows of x on this machine (timed once per bucket per process, <see cref="GemmChoice"/>).</summary>
    public static bool Wins(long rows) => Choice.Wins(rows);

    /// <summary>What was decided, with the timings (start-up log, benchmark headers); <paramref name="decide"/> times what is not yet timed.</summary>
    public static string Describe(bool decide = false)
    {
        if (!Enabled) return "f32 GEMM kernel off";
        if (!Available) return $"f32 GEMM kernel unavailable ({Status})";
        if (Forced) return "f32 GEMM kernel forced on";
        var unpacked = Choice.UnpackedTiming(decide) is { } u ? "; " + u : "";
        return Choice.Timings(decide) is { } timings
            ? "f32 GEMM kernel vs the other path (×24: the SIMD GEMV passes where they take 17–32 rows; else libtorch) per rows of x, " + GemmChoice.Shapes + ", the kernel taking the work from 5 % faster: " + timings + unpacked
            : "f32 GEMM kernel not yet timed (no f32 projection of 17+ rows large enough so far)" + unpacked;
    }

    static (nint, string) Load() =>
        !Avx512F.IsSupported ? (0, "no AVX-512 on this CPU")
        : NativeCode.Load(F32GemmCode.Bytes, SelfCheck, "AVX-512 f32 GEMM kernel mapped and checked");

    /// <summary>
    /// Runs the mapped code on a weight whose sizes leave a tail in every blocking (rows of x past
    /// a multiple of 12, weight rows past a multiple of 32, K past a block of 256), with and
    /// without a bias, and compares every output with its exact sum; null when all agree to
    /// float32 rounding, nothing outside the outputs asked for was written, and the unpacked path
    /// wrote the packed path's outputs bit for bit.
    /// </summary>
    static string? SelfCheck(nint entry)
    {
        const int n = 45, k = 300, m = 14, xs = k + 3, ys = n + 5;
        var rng = new Random(23);
        var w = new float[n * k];
        var x = new float[m * xs];
        var b = new float[n];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 4 - 2);
        for (int i = 0; i < b.Length; i++) b[i] = (float)(rng.NextDouble() - 0.5);
        var pack = GC.AllocateUninitializedArray<float>(PackFloats, pinned: true);
        foreach (bool withBias in new[] { false, true })
        {
            var y = new float[m * ys];
            var yUnpacked = new float[m * ys];
            Array.Fill(y, 12345f);
            Array.Fill(yUnpacked, 12345f);
            fixed (float* wp = w, xp = x, bp = b, yp = y, yu = yUnpacked, pk = pack)
            {
                Call(entry, wp - k, k, xp, xs, m, withBias ? bp - 1 : null, yp, ys, 1, n + 1, pk);   // weight rows 1..n address w's rows 0..n−1
                Call(entry, wp - k, k, xp, xs, m, withBias ? bp - 1 : null, yu, ys, 1, n + 1, null);
            }
            if (!y.AsSpan().SequenceEqual(yUnpacked)) return "the unpacked path's outputs differ from the packed path's";
            for (int r = 0; r < m; r++)
                for (int c = 0; c < ys; c++)
                {
                    if (c < 1 || c > n)
                    {
                        if (y[r * ys + c] != 12345f) return "wrote outside the outputs asked for";
                        continue;
                    }
                    double exact = withBias ? b[c - 1] : 0, magnitude = Math.Abs(exact);
                    for (int i = 0; i < k; i++)
                    {
                        double p = (double)w[(c - 1) * k + i] * x[r * xs + i];
                        exact += p;
                        magnitude += Math.Abs(p);
                    }
                    float got = y[r * ys + c];
                    if (!(Math.Abs(got - exact) <= 1e-5 * magnitude + 1e-6)) return $"row {r}, output {c - 1}: {got} vs {exact}";
                }
        }
        return null;
    }
}
