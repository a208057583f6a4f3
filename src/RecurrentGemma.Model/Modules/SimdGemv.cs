using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Small-batch projections (1–32 rows of x; more than eight as passes of four over blocks of weight rows that stay in L2) on the CPU through <see cref="GemvKernels"/> and
/// <see cref="GemvRowsKernels"/> (or, for bf16 where the CPU has the instruction
/// and it measured faster, <see cref="Bf16DotKernel"/>), split by output rows over every core. A decode step of a few
/// sequences is about one pass over the weights, and libtorch's one-row and few-row paths stream
/// them well below memory speed on the machines measured (2B: ~18 GB/s bf16, ~18–31 GB/s f32
/// against ~60 GB/s that two cores can read; docs/benchmarks.md). Whether it is used is decided per
/// dtype and row count by timing it against libtorch on this machine the first time a large
/// enough weight comes by (<see cref="Wins"/>, SimdGemv.Choice.cs), never by CPU model.
/// The kernels run on their own worker threads (<see cref="KernelWorkers"/>), so they want libtorch on one thread around them: its
/// OpenMP workers spin for a while after each op and would take the cores (the engine's
/// ThreadCalibration times exactly that choice).
/// </summary>
public static unsafe partial class SimdGemv
{
    /// <summary>
    /// Rows of x up to which the kernels' companions take a decode batch too (the fused RG-LRU
    /// step, the row-wise RMS norm); the projections go on to <see cref="MaxPassRows"/>.
    /// </summary>
    public const int MaxRows = 8;

    /// <summary>
    /// Most rows of x a projection takes: more than four are passes of at most four over each
    /// L2-sized block of weight rows, so past the first pass the arithmetic runs from L2 (a 2B
    /// step of 16 rows had been libtorch's GEMM: ~170 GFLOP/s in bf16 on the 2-core EPYC, ~57 in
    /// f32). Whether the kernels win is timed per bucket of rows like every other (<see cref="Wins"/>).
    /// </summary>
    public const int MaxPassRows = 32;

    /// <summary>
    /// Weight bytes per block that the passes of a product of more than four rows share: read from memory
    /// once, the second pass finds them in L2. A quarter of the reported L2 (512 KiB on a 2-core
    /// Intel Xeon, where this took the 256k-row head with 5 rows from 150–160 to 105–110 ms in
    /// bf16 and 290–320 to 175–205 ms in f32: whole parts had re-read memory in each pass).
    /// </summary>
    static readonly long BlockBytes = CpuCache.L2Bytes / 4;

    /// <summary>Below this many weight elements the split and the call cost more than they save.</summary>
    public static long MinElements { get; set; } = 1 << 20;

    /// <summary>True where the CPU has 512-bit, or 256-bit with FMA, vectors the kernels are written for.</summary>
    public static bool Supported => (GemvKernels.Has512 && !Avx2Only) || GemvKernels.Has256;

    /// <summary>Off switch for benchmarks and comparisons.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Skips the timing and uses the kernels wherever they apply (tests).</summary>
    public static bool Forced { get; set; }

    [DllImport("LibTorchSharp")]
    static extern IntPtr THSTensor_data(IntPtr handle);

    /// <summary>The first element of a CPU tensor's storage for a kernel to read or write (callers
    /// check contiguity and dtype); counted (<see cref="CpuPaths.KernelReads"/>).</summary>
    internal static void* Data(Tensor t)
    {
        CpuPaths.CountRead();
        return (void*)THSTensor_data(t.Handle);
    }

    /// <summary>The same pointer for host bookkeeping that is not a model path (the step buffer's
    /// metadata on the CPU): not counted.</summary>
    internal static void* HostData(Tensor t) => (void*)THSTensor_data(t.Handle);

    /// <summary>The most rows of x the kernels take on this CPU (several rows: AVX-512 only).</summary>
    public static int RowsSupported => GemvKernels.Has512 && !Avx2Only ? MaxPassRows : 1;

    /// <summary>
    /// The most rows of x a projection goes through the kernels with now: <see cref="RowsSupported"/>,
    /// or <see cref="BatchInvariance.MaxRows"/> if more, on any CPU they run on, while it holds (the 256-bit loops then
    /// take one row of x per pass).
    /// </summary>
    public static int RowsTaken => Enabled && Supported && BatchInvariance.Enabled ? Math.Max(BatchInvariance.MaxRows, RowsSupported) : RowsSupported;

    /// <summary>
    /// Runs the 256-bit (AVX2 + FMA) loops on a CPU that has AVX-512 too, so that the path the
    /// AVX2-only machines take is tested here (and can be compared); one row of x only, as there.
    /// </summary>
    public static bool Avx2Only { get; set; }

    public static bool Applies(Tensor x, Tensor weight, Tensor? bias)
    {
        if (!Enabled || !Supported || !Structural(x, weight, bias, out long rows)) return false;
        if (BatchInvariance.Covers(rows)) return true;   // every size and row count: one summation order per row
        if (weight.numel() < MinElements || rows > RowsSupported) return false;
        return Forced || Wins(weight.dtype, (int)rows);
    }

    /// <summary>
    /// Whether the kernels can read these tensors at all (CPU, f32 or bf16 alike, rows of x with
    /// unit inner stride, a row-major weight, a contiguous bias), with how many rows of x there are.
    /// </summary>
    internal static bool Structural(Tensor x, Tensor weight, Tensor? bias, out long rows)
    {
        rows = 0;
        if (!CpuPaths.On(weight) || weight.dim() != 2) return false;
        var dtype = weight.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || x.dtype != dtype) return false;
        long k = weight.size(1);
        if (k < 1 || x.size(-1) != k) return false;
        rows = x.numel() / k;
        if (rows < 1) return false;
        if (weight.stride(1) != 1 || weight.stride(0) != k || RowStride(x) < k) return false;
        return bias is null || (bias.dtype == dtype && bias.is_contiguous());
    }

    /// <summary>
    /// Whether a CPU product of this dtype and size with this many rows of x goes through the
    /// kernels (the rules of <see cref="Applies"/> without the tensors; <see cref="RecurrentStepRows"/>).
    /// </summary>
    internal static bool Takes(ScalarType dtype, long elements, int rows) =>
        BatchInvariance.Covers(rows)
        || (Enabled && Supported && elements >= MinElements && rows >= 1 && rows <= RowsSupported && (Forced || Wins(dtype, rows)));

    /// <summary>x·Wᵀ + b for 1–32 rows of x: [.., K] → [.., N] in x's dtype (bf16 rounded once, from float32 sums).</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        long start = Stopwatch.GetTimestamp();
        long n = weight.size(0), k = weight.size(1);
        var shape = ShapeBuffer((int)x.dim());   // size(d), not .shape: that marshals through a delegate (~150 managed bytes a call)
        for (int d = 0; d < shape.Length - 1; d++) shape[d] = x.size(d);
        shape[^1] = n;
        var y = empty(shape, x.dtype, x.device);
        Run(x, RowStride(x), weight, bias, y, (int)(x.numel() / k), n, k);
        Interlocked.Add(ref _ticks, Stopwatch.GetTimestamp() - start);
        Interlocked.Add(ref _bytes, n * k * weight.ElementSize);
        return y;
    }

    static long _ticks, _bytes;

    /// <summary>A reused array for an output shape of this many dims (libtorch copies it): no garbage per projection.</summary>
    static long[] ShapeBuffer(int dims)
    {
        var cache = _shapes ??= new long[8][];
        return dims < cache.Length ? cache[dims] ??= new long[dims] : new long[dims];
    }

    [ThreadStatic] static long[]?[]? _shapes;

    /// <summary>Time spent in, and weight bytes streamed by, the kernels so far in this process (profiling).</summary>
    public static (TimeSpan Elapsed, long WeightBytes) Totals =>
        (Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _ticks)), Interlocked.Read(ref _bytes));

    /// <summary>
    /// The distance in elements between x's rows when x is [.., K] with unit inner stride and its
    /// leading dims collapse into one row dimension (a contiguous tensor: K; a narrow of the last
    /// dim such as the MLP's gate half of [B, T, 2M]: 2M); −1 when they do not.
    /// </summary>
    public static long RowStride(Tensor x)
    {
        if (x.dim() == 0) return -1;
        long k = x.size(-1);
        if (k > 1 && x.stride(-1) != 1) return -1;
        long step = -1, inner = 1;
        for (int d = (int)x.dim() - 2; d >= 0; d--)
        {
            long size = x.size(d);
            if (size == 1) continue;
            long stride = x.stride(d);
            if (step < 0) step = stride;
            else if (stride != step * inner) return -1;
            inner *= size;
        }
        return step < 0 ? k : step;
    }

    static void Run(Tensor x, long xStride, Tensor weight, Tensor? bias, Tensor y, int rows, long n, long k)
    {
        void* w = Data(weight);
        void* xp = Data(x);
        void* yp = Data(y);
        void* bp = bias is null ? null : Data(bias);
        bool bf16 = weight.dtype == ScalarType.BFloat16;
        bool dot = bf16 && UsesBf16Dot(rows);   // reads x as bf16 itself: no split into even and odd
        bool rowByRow = !bf16 && rows == 1 && UsesF32RowByRow;   // decided here, on the calling thread: the first use times it
        long half = (k + 1) / 2;

        // bf16: x split into float32 even and odd elements; f32 rows that are not packed: a packed copy.
        bool pack = !bf16 && xStride != k;
        float[] scratch = ArrayPool<float>.Shared.Rent(bf16 && !dot ? (int)(2 * rows * half) : pack ? (int)(rows * k) : 1);
        try
        {
            fixed (float* s = scratch)
            {
                float* xEven = s, xOdd = xEven + rows * half;
                if (bf16 && !dot)
                {
                    var xs = (ushort*)xp;
                    for (int b = 0; b < rows; b++)
                        for (long i = 0; i < k; i++)
                            ((i & 1) == 0 ? xEven : xOdd)[b * half + i / 2] = GemvKernels.ToFloat(xs[b * xStride + i]);
                }
                else if (pack)
                    for (int b = 0; b < rows; b++)
                        new ReadOnlySpan<float>((float*)xp + b * xStride, (int)k).CopyTo(new Span<float>(s + b * k, (int)k));
                // Parts of whole groups of 8 rows, about half a MiB of weight each and several per
                // thread, claimed one at a time (KernelWorkers), so a late thread costs little.
                long bytesPerRow = k * (bf16 ? 2 : 4);
                int parts = (int)Math.Clamp(n * bytesPerRow / (512 << 10), 1, 8 * KernelWorkers.Threads);
                long size = ((n + parts - 1) / parts + 7) & ~7L;
                parts = (int)((n + size - 1) / size);
                // Within a part, blocks of weight rows that stay in L2 while each four rows of x pass
                // over them (the 256-bit loops take one row of x per pass: several rows reach them only
                // for BatchInvariance, which wants every row summed as the one-row loop sums it).
                int group = GemvKernels.Has512 && !Avx2Only ? 4 : 1;
                long block = rows <= group ? size : Math.Max(8, (BlockBytes / bytesPerRow) & ~7L);
                var job = new Job
                {
                    W = w, X = xp, XStride = xStride, XF = pack ? s : (float*)xp, XEven = xEven, XOdd = xOdd, Half = half,
                    Y = yp, Bias = bp, Rows = rows, N = n, K = k, Size = size, Block = block, Group = group,
                    Bf16 = bf16, Dot = dot, RowByRow = rowByRow,
                };
                if (parts == 1) job.Part(0);   // a small weight: on this thread, and no delegate to allocate
                else RunParts(parts, job);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    static void RunParts(int parts, Job job) => KernelWorkers.Run(parts, job.Part);

    /// <summary>One projection's operands and how it is cut: part p computes output rows [p·Size, (p + 1)·Size).</summary>
    struct Job
    {
        public void* W, X, Y, Bias;
        public float* XF, XEven, XOdd;
        public long XStride, Half, N, K, Size, Block;
        public int Rows, Group;
        public bool Bf16, Dot, RowByRow;

        public readonly void Part(int p)
        {
            long n0 = p * Size, n1 = Math.Min(N, n0 + Size), len = n1 - n0;
            var sums = PartSums(Rows * len);
            fixed (float* l = sums)
            {
                // The kernels address sums as y[b·stride + i] for output rows i in [n0, n1).
                float* y0 = l - n0;
                for (long m0 = n0; m0 < n1; m0 += Block)
                {
                    long m1 = Math.Min(n1, m0 + Block);
                    for (int b0 = 0; b0 < Rows; b0 += Group)
                        if (Dot) Bf16DotKernel.Rows((ushort*)W, K, (ushort*)X + b0 * XStride, XStride, Math.Min(Group, Rows - b0), y0 + b0 * len, len, m0, m1);
                        else Pass(Bf16, RowByRow, W, K, XF + b0 * K, XEven + b0 * Half, XOdd + b0 * Half, y0 + b0 * len, len, m0, m1, Math.Min(Group, Rows - b0));
                }
                Finish(Bf16, l, Bias, Y, Rows, N, len, n0, n1);
            }
        }
    }

    /// <summary>Per-thread float32 sums of one part ([rows, part length]), reused across calls.</summary>
    static float[] PartSums(long count)
    {
        var a = _partSums;
        if (a is null || a.LongLength < count) _partSums = a = new float[Math.Max(count, 4096)];
        return a;
    }

    [ThreadStatic] static float[]? _partSums;

    /// <summary>
    /// Reads every byte of a CPU tensor once, split and scheduled like a projection, with no
    /// arithmetic: how fast the kernels could go if they only read (benchmarks print a decode
    /// step against this beside the copy-bandwidth floor).
    /// </summary>
    public static void ReadThrough(Tensor t)
    {
        if (t.device_type != DeviceType.CPU || !t.is_contiguous()) throw new ArgumentException("a contiguous CPU tensor is needed", nameof(t));
        byte* p0 = (byte*)Data(t);
        long bytes = t.numel() * t.ElementSize;
        int parts = (int)Math.Clamp(bytes / (512 << 10), 1, 8 * KernelWorkers.Threads);
        long size = (bytes / parts) & ~127L;
        KernelWorkers.Run(parts, p =>
        {
            byte* s = p0 + p * size, e = p == parts - 1 ? p0 + bytes : s + size;
            _sink = GemvKernels.ReadOnly(s, e);   // stored, so the reads are not optimised away
        });
    }

    static float _sink;

    /// <summary>
    /// Outputs [n0, n1) of every row from the part's float32 sums ([rows, len]) plus the bias, in
    /// the output dtype (bf16 rounded once).
    /// </summary>
    static void Finish(bool bf16, float* sums, void* bias, void* y, int rows, long n, long len, long n0, long n1)
    {
        for (int r = 0; r < rows; r++)
        {
            float* sr = sums + r * len - n0;
            if (bf16)
            {
                ushort* yo = (ushort*)y + r * n, b = (ushort*)bias;
                for (long i = n0; i < n1; i++) yo[i] = GemvKernels.ToBf16(b is null ? sr[i] : sr[i] + GemvKernels.ToFloat(b[i]));
            }
            else
            {
                float* yo = (float*)y + r * n, b = (float*)bias;
                for (long i = n0; i < n1; i++) yo[i] = b is null ? sr[i] : sr[i] + b[i];
            }
        }
    }

    /// <summary>One pass over weight rows [n0, n1) for up to four rows of x.</summary>
    static void Pass(bool bf16, bool rowByRow, void* w, long k, float* x, float* xEven, float* xOdd, float* y, long n, long n0, long n1, int rows)
    {
        switch (rows, bf16)
        {
            case (1, false) when rowByRow: GemvKernels.F32RowByRow((float*)w, k, x, y, n0, n1); break;
            case (1, false): GemvKernels.F32((float*)w, k, x, y, n0, n1); break;
            case (1, true): GemvKernels.Bf16((ushort*)w, k, xEven, xOdd, y, n0, n1); break;
            case (2, false): GemvRowsKernels.F32<TwoRows>((float*)w, k, x, y, n, n0, n1); break;
            case (2, true): GemvRowsKernels.Bf16<TwoRows>((ushort*)w, k, xEven, xOdd, y, n, n0, n1); break;
            case (3, false): GemvRowsKernels.F32<ThreeRows>((float*)w, k, x, y, n, n0, n1); break;
            case (3, true): GemvRowsKernels.Bf16<ThreeRows>((ushort*)w, k, xEven, xOdd, y, n, n0, n1); break;
            case (_, false): GemvRowsKernels.F32<FourRows>((float*)w, k, x, y, n, n0, n1); break;
            case (_, true): GemvRowsKernels.Bf16<FourRows>((ushort*)w, k, xEven, xOdd, y, n, n0, n1); break;
        }
    }
}
