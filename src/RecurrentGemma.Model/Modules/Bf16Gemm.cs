using System.Diagnostics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// bf16 projections of many rows of x (prefill chunks, large decode batches) through the model's
/// own GEMM on the CPU's bf16 dot-product instruction (Native/gemm_bf16.c, machine code in
/// <see cref="Bf16GemmCode"/>, mapped by <see cref="NativeCode"/>): float32 sums, rounded to bf16
/// once, split by weight rows over every core (<see cref="KernelWorkers"/>). On a 2-core Intel
/// Xeon with AVX512_BF16 libtorch's bf16 GEMM ran at ~140 GFLOP/s, below its own float32 GEMM, so
/// a bf16 prefill there was no faster than f32; the instruction does twice an FMA's work. On the
/// AMD EPYC the kernel ran at about libtorch's rate (docs/benchmarks.md). Offered only where the
/// CPU lists AVX512_BF16 (with AVX-512BW/VL for its masked stores) and the mapped code reproduced
/// exact sums; used only where timing on this machine says it beats what would run otherwise (per
/// bucket of rows, <see cref="GemmChoice"/>).
/// </summary>
public static unsafe class Bf16Gemm
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

    /// <summary>Fewest rows of x it takes (as <see cref="F32Gemm.MinRows"/>; fewer go through <see cref="SimdGemv"/>).</summary>
    public const int MinRows = F32Gemm.MinRows;

    /// <summary>Weight rows per part of a call (the kernel's NC: one packed block per part).</summary>
    const long PartRows = 256;

    /// <summary>32-bit pairs of one thread's pack buffer (the kernel's NC × KC).</summary>
    const int PackPairs = 256 * 256;

    /// <summary>Columns of a K block (KC pairs): a weight wider than this keeps float32 sums per row of x between blocks.</summary>
    const long BlockColumns = 512;

    public static bool Applies(Tensor x, Tensor weight, Tensor? bias)
    {
        long rows = Enabled ? GemmChoice.Rows(x, weight, bias, ScalarType.BFloat16, MinRows, unit: 2) : 0;   // whole pairs per weight row
        // A pinned Linear.UpcastBf16OnCpu names the path for comparisons (up-cast or libtorch's bf16): the kernel stays out unless forced.
        return rows > 0 && Available && (Forced || (Modules.Linear.UpcastBf16OnCpu is null && Choice.Wins(rows)));
    }

    /// <summary>x·Wᵀ + b: [.., K] → [.., N], bf16 in and out, any number of rows of x (the caller checks <see cref="Applies"/> or <see cref="Available"/>; K even).</summary>
    /// <param name="x">Rows of input, [.., K].</param>
    /// <param name="weight">The projection, [N, K], row-major.</param>
    /// <param name="bias">Added to every row, [N], or null.</param>
    /// <param name="unpacked">Whether to skip packing the weight (same bits); null: the timed choice for a few rows of x (<see cref="GemmChoice.Unpacks"/>).</param>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias, bool? unpacked = null)
    {
        var entry = Loaded.Value.Entry;
        if (entry == 0) throw new InvalidOperationException("the bf16 GEMM kernel is not available: " + Status);
        long start = Stopwatch.GetTimestamp();
        long n = weight.size(0), k = weight.size(1);
        var shape = x.shape;   // a fresh array on every call (ours to change); host metadata only: this path never runs on a GPU
        shape[^1] = n;
        var y = empty(shape, ScalarType.BFloat16, x.device);
        long rows = x.numel() / k, xs = SimdGemv.RowStride(x);
        using var biasF = bias?.to(ScalarType.Float32);   // the kernel adds a float32 bias before rounding
        var w = (ushort*)SimdGemv.Data(weight);
        var xp = (ushort*)SimdGemv.Data(x);
        var yp = (ushort*)SimdGemv.Data(y);
        var bp = biasF is null ? null : (float*)SimdGemv.Data(biasF);
        long accFloats = k > BlockColumns ? rows * PartRows : 1;
        bool direct = unpacked ?? Choice.Unpacks(rows);
        int parts = (int)((n + PartRows - 1) / PartRows);
        KernelWorkers.Run(parts, p =>
        {
            long n0 = p * PartRows, n1 = Math.Min(n, n0 + PartRows);
            if (direct)
            {
                Call(entry, w, k, xp, xs, rows, bp, yp, n, n0, n1, null, null);   // no pack or acc buffers: the unpacked path
                return;
            }
            if (_acc is null || _acc.LongLength < accFloats) _acc = GC.AllocateUninitializedArray<float>(checked((int)accFloats), pinned: true);
            fixed (uint* pack = _pack ??= GC.AllocateUninitializedArray<uint>(PackPairs, pinned: true))
            fixed (float* acc = _acc)
                Call(entry, w, k, xp, xs, rows, bp, yp, n, n0, n1, pack, acc);
        });
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
        return y;
    }

    [ThreadStatic] static uint[]? _pack;
    [ThreadStatic] static float[]? _acc;
    static long _ticks;

    /// <summary>Time spent in the kernel so far in this process (profiling, tests).</summary>
    public static TimeSpan Elapsed => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _ticks));

    static void Call(nint entry, ushort* w, long k, ushort* x, long xs, long m, float* bias, ushort* y, long ys, long n0, long n1, uint* pack, float* acc) =>
        ((delegate* unmanaged<ushort*, long, ushort*, long, long, float*, ushort*, long, long, long, uint*, float*, void>)entry)(w, k, x, xs, m, bias, y, ys, n0, n1, pack, acc);

    /// <summary>
    /// Takes the work only from 20 % faster. On the AMD EPYC it ties libtorch on each 2B shape
    /// alone (64 rows, weights beyond the caches: 0.90–1.07× libtorch's time) and in whole steps
    /// it measured anywhere from a tie to 20 % slower (a 2B decode step of 64 sequences, one
    /// process alternating: 59.6 vs 73.4 and 59.7 vs 72.3 tok/s in two runs, 57.6–58.9 against
    /// 58.2–58.8 in two others), which a single timing cannot tell apart; where it is meant to
    /// serve (libtorch's bf16 GEMM at ~140 GFLOP/s) it should win by 2× or more.
    /// Prefill chunks (128 rows or more) take it unless it timed 10 % slower: there it measured ~10 %
    /// faster end to end on the EPYC while tying libtorch in the isolated timing (ratios 0.95–1.0),
    /// so a margin below 1 left it out and one of exactly 1 flipped from process to process (a
    /// 512-token 2B prompt's first token 3.17 against 3.51 s, 128 tokens 0.97 against 1.03 s, three
    /// rounds each alternating in one process; docs/benchmarks.md, "Row-exact forwards").
    /// </summary>
    static readonly GemmChoice Choice = new(ScalarType.BFloat16, margin: 0.8, prefillMargin: 1.1);

    /// <summary>Its timed decisions (<see cref="RowExactGemm"/> reads the unpacked path's).</summary>
    internal static GemmChoice Choices => Choice;

    /// <summary>Whether the kernel beats the other path for this many rows of x on this machine (timed once per bucket per process).</summary>
    public static bool Wins(long rows) => Choice.Wins(rows);

    /// <summary>What was decided, with the timings (start-up log, benchmark headers); <paramref name="decide"/> times what is not yet timed.</summary>
    public static string Describe(bool decide = false)
    {
        if (!Enabled) return "bf16 GEMM kernel off";
        if (!Available) return $"bf16 GEMM kernel unavailable ({Status})";
        if (Forced) return "bf16 GEMM kernel forced on";
        var unpacked = Choice.UnpackedTiming(decide) is { } u ? "; " + u : "";
        return Choice.Timings(decide) is { } timings
            ? "bf16 GEMM kernel vs the other path (×24: the SIMD GEMV passes where they take 17–32 rows; ×256: libtorch's bf16 or the up-cast, whichever was chosen; else libtorch) per rows of x, " + GemmChoice.Shapes + ", the kernel taking the work from 20 % faster: " + timings + unpacked
            : "bf16 GEMM kernel not yet timed (no bf16 projection of 17+ rows large enough so far)" + unpacked;
    }

    static (nint, string) Load() =>
        !Bf16DotKernel.CpuHasAvx512Bf16 ? (0, "no AVX512_BF16 on this CPU")
        : !Avx512BW.IsSupported || !Avx512BW.VL.IsSupported ? (0, "no AVX-512BW/VL on this CPU")
        : NativeCode.Load(Bf16GemmCode.Bytes, SelfCheck, "AVX512-BF16 GEMM kernel mapped and checked");

    /// <summary>
    /// Runs the mapped code on a weight whose sizes leave a tail in every blocking (rows of x past
    /// a multiple of 12, weight rows past a multiple of 32, K past a block of 512 columns and past
    /// a tile of 32), with and without a bias, and compares every output with its exact sum
    /// rounded to bf16; null when all agree, nothing outside the outputs asked for was written, and
    /// the unpacked path wrote the packed path's outputs bit for bit.
    /// </summary>
    static string? SelfCheck(nint entry)
    {
        const int n = 45, k = 600, m = 14, xs = k + 3, ys = n + 5;
        const ushort untouched = 0x7FC1;
        var rng = new Random(29);
        static ushort Bf16(double v) => (ushort)(BitConverter.SingleToUInt32Bits((float)v) >> 16);   // truncation: the inputs only need to be bf16 values
        static double Value(ushort v) => BitConverter.UInt32BitsToSingle((uint)v << 16);
        var w = new ushort[n * k];
        var x = new ushort[m * xs];
        var b = new float[n];
        for (int i = 0; i < w.Length; i++) w[i] = Bf16(rng.NextDouble() * 2 - 1);
        for (int i = 0; i < x.Length; i++) x[i] = Bf16(rng.NextDouble() * 4 - 2);
        for (int i = 0; i < b.Length; i++) b[i] = (float)Value(Bf16(rng.NextDouble() - 0.5));
        var pack = GC.AllocateUninitializedArray<uint>(PackPairs, pinned: true);
        var acc = GC.AllocateUninitializedArray<float>(m * (int)PartRows, pinned: true);
        foreach (bool withBias in new[] { false, true })
        {
            var y = new ushort[m * ys];
            var yUnpacked = new ushort[m * ys];
            Array.Fill(y, untouched);
            Array.Fill(yUnpacked, untouched);
            fixed (ushort* wp = w, xp = x, yp = y, yu = yUnpacked)
            fixed (float* bp = b, acp = acc)
            fixed (uint* pk = pack)
            {
                Call(entry, wp - k, k, xp, xs, m, withBias ? bp - 1 : null, yp, ys, 1, n + 1, pk, acp);   // weight rows 1..n address w's rows 0..n−1
                Call(entry, wp - k, k, xp, xs, m, withBias ? bp - 1 : null, yu, ys, 1, n + 1, null, null);
            }
            if (!y.AsSpan().SequenceEqual(yUnpacked)) return "the unpacked path's outputs differ from the packed path's";
            for (int r = 0; r < m; r++)
                for (int c = 0; c < ys; c++)
                {
                    if (c < 1 || c > n)
                    {
                        if (y[r * ys + c] != untouched) return "wrote outside the outputs asked for";
                        continue;
                    }
                    double exact = withBias ? b[c - 1] : 0, magnitude = Math.Abs(exact);
                    for (int i = 0; i < k; i++)
                    {
                        double p = Value(w[(c - 1) * k + i]) * Value(x[r * xs + i]);
                        exact += p;
                        magnitude += Math.Abs(p);
                    }
                    double got = Value(y[r * ys + c]);   // one bf16 rounding (8 significant bits) of a float32 sum
                    if (!(Math.Abs(got - exact) <= Math.Abs(exact) / 256 + 1e-5 * magnitude + 1e-6)) return $"row {r}, output {c - 1}: {got} vs {exact}";
                }
        }
        return null;
    }
}
