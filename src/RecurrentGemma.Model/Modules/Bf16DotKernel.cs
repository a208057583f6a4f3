using System.Runtime.Intrinsics.X86;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// bf16 projections of one to four rows of x through the CPU's AVX512-BF16 dot-product
/// instruction, for <see cref="SimdGemv"/>. .NET 10 has no intrinsic for that instruction, so the loop is written
/// in C (Native/gemv_bf16_dot.c), compiled once by scripts/native-kernels.sh, and its machine
/// code (<see cref="Bf16DotCode"/>) is copied into a page mapped executable here, the way a JIT
/// places code. It is offered only on Linux x86-64 (the calling convention it was compiled for)
/// where CPUID reports AVX512_BF16, only after it has reproduced exact sums on a test matrix,
/// and <see cref="SimdGemv"/> uses it only where timing on this machine says it is faster than
/// the C# kernel. Anything unexpected (no such CPU, a system that refuses executable mappings, a
/// wrong result) leaves it unavailable, with the reason in <see cref="Status"/>.
/// </summary>
public static unsafe class Bf16DotKernel
{
    static readonly Lazy<(nint Entry, string Status)> Loaded = new(Load);

    /// <summary>True when the kernel is mapped and passed its self-check.</summary>
    public static bool Available => Loaded.Value.Entry != 0;

    /// <summary>Why it is or is not available (start-up log, benchmark headers).</summary>
    public static string Status => Loaded.Value.Status;

    /// <summary>The most rows of x one call takes (more made the loop arithmetic-bound; Native/gemv_bf16_dot.c).</summary>
    public const int MaxRows = 4;

    /// <summary>
    /// y[b·ys + n] = Σ_k W[n, k]·x[b·xs + k] for weight rows [n0, n1) of a row-major bf16 [N, K]
    /// weight and rows b &lt; <paramref name="rows"/> (1–4) of a bf16 x, float32 sums.
    /// </summary>
    internal static void Rows(ushort* w, long k, ushort* x, long xs, int rows, float* y, long ys, long n0, long n1)
    {
        if (rows is < 1 or > MaxRows) throw new ArgumentOutOfRangeException(nameof(rows), rows, "1 to 4 rows of x");
        var entry = Loaded.Value.Entry;
        if (entry == 0) throw new InvalidOperationException("the AVX512-BF16 kernel is not available: " + Status);
        Call(entry, w, k, x, xs, rows, y, ys, n0, n1);
    }

    static void Call(nint entry, ushort* w, long k, ushort* x, long xs, long rows, float* y, long ys, long n0, long n1) =>
        ((delegate* unmanaged<ushort*, long, ushort*, long, long, float*, long, long, long, void>)entry)(w, k, x, xs, rows, y, ys, n0, n1);

    /// <summary>CPUID leaf 7, sub-leaf 1, EAX bit 5: AVX512_BF16 (the OS's AVX-512 state is what Avx512F.IsSupported checks).</summary>
    public static bool CpuHasAvx512Bf16 =>
        X86Base.IsSupported && Avx512F.IsSupported && X86Base.CpuId(7, 0).Eax >= 1 && (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;

    static (nint, string) Load() =>
        !CpuHasAvx512Bf16 ? (0, "no AVX512_BF16 on this CPU")
        : NativeCode.Load(Bf16DotCode.Bytes, SelfCheck, "AVX512-BF16 dot kernel mapped and checked");

    /// <summary>
    /// Runs the mapped code on a small weight whose K leaves a tail after the vector body, for each
    /// count of rows of x, and compares every output with its exact sum; null when all agree to
    /// float32 rounding and nothing outside the outputs asked for was written.
    /// </summary>
    static string? SelfCheck(nint entry)
    {
        const int n = 11, k = 128 * 2 + 37, xs = k + 5;
        var w = new ushort[n * k];
        var x = new ushort[MaxRows * xs];
        var rng = new Random(17);
        for (int i = 0; i < w.Length; i++) w[i] = GemvKernels.ToBf16((float)(rng.NextDouble() * 2 - 1));
        for (int i = 0; i < x.Length; i++) x[i] = GemvKernels.ToBf16((float)(rng.NextDouble() * 4 - 2));
        const int ys = n + 3;   // outputs of row b at y[b·ys + 1 .. b·ys + n]; the cells around them must stay untouched
        for (int rows = 1; rows <= MaxRows; rows++)
        {
            var y = new float[MaxRows * ys];
            Array.Fill(y, 12345f);
            fixed (ushort* wp = w, xp = x)
            fixed (float* yp = y)
                Call(entry, wp - k, k, xp, xs, rows, yp, ys, 1, n + 1);   // weight rows 1..n address w's rows 0..n−1
            for (int b = 0; b < MaxRows; b++)
                for (int c = 0; c < ys; c++)
                {
                    bool output = b < rows && c >= 1 && c <= n;
                    if (!output)
                    {
                        if (y[b * ys + c] != 12345f) return $"{rows} rows: wrote outside the outputs asked for";
                        continue;
                    }
                    double exact = 0, magnitude = 0;
                    for (int i = 0; i < k; i++)
                    {
                        double p = (double)GemvKernels.ToFloat(w[(c - 1) * k + i]) * GemvKernels.ToFloat(x[b * xs + i]);
                        exact += p;
                        magnitude += Math.Abs(p);
                    }
                    float got = y[b * ys + c];
                    if (!(Math.Abs(got - exact) <= 1e-5 * magnitude + 1e-6)) return $"{rows} rows, row {b}, output {c - 1}: {got} vs {exact}";
                }
        }
        return null;
    }
}
