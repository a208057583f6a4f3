using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// y[n] = Σ_k W[n, k]·x[k] over a block of rows of a row-major [N, K] weight, with float32
/// accumulation: the inner loop of <see cref="SimdGemv"/>. A batch-1 decode step is one pass over
/// the weights, so these loops are written to keep memory busy rather than to save arithmetic:
/// four rows (eight for bf16 on AVX-512) share each load of x, and each group of rows prefetches
/// ahead of itself (measured on the 2-core AVX-512 machine: bf16 ~30 GB/s without the prefetch,
/// ~38 with it, ~45 in groups of eight, in one-off timing programs; docs/platform.md).
/// bf16 rows are read as 32-bit pairs: the high half of a pair is already the odd element as a
/// float32 (mask the low bits), the low half shifted up by 16 is the even one, so x is split into
/// its even and odd elements once per call and no widening shuffle is needed.
/// </summary>
internal static unsafe class GemvKernels
{
    const int Rows = 4;

    public static bool Has512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    /// <summary>The 512-bit loops, unless <see cref="SimdGemv.Avx2Only"/> asks for the 256-bit ones (tests, comparisons).</summary>
    static bool Use512 => Has512 && !SimdGemv.Avx2Only;

    public static bool Has256 => Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Rows [n0, n1) of W·x for a float32 weight.</summary>
    public static void F32(float* w, long k, float* x, float* y, long n0, long n1)
    {
        long n = n0;
        long group = Rows * k * sizeof(float);
        for (; n + Rows <= n1; n += Rows)
        {
            float* r0 = w + n * k, r1 = r0 + k, r2 = r1 + k, r3 = r2 + k;
            byte* ahead = (byte*)r0 + 2 * group;
            long i = 0;
            // Two accumulators per row over alternating vectors of K (RowF32's order).
            if (Use512)
            {
                var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
                var b0 = a0; var b1 = a0; var b2 = a0; var b3 = a0;
                for (; i + 32 <= k; i += 32, ahead += Rows * 128)
                {
                    Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                    Sse.Prefetch0(ahead + 256); Sse.Prefetch0(ahead + 320); Sse.Prefetch0(ahead + 384); Sse.Prefetch0(ahead + 448);
                    var xv = Vector512.Load(x + i);
                    a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(r0 + i), xv, a0);
                    a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(r1 + i), xv, a1);
                    a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(r2 + i), xv, a2);
                    a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(r3 + i), xv, a3);
                    xv = Vector512.Load(x + i + 16);
                    b0 = Avx512F.FusedMultiplyAdd(Vector512.Load(r0 + i + 16), xv, b0);
                    b1 = Avx512F.FusedMultiplyAdd(Vector512.Load(r1 + i + 16), xv, b1);
                    b2 = Avx512F.FusedMultiplyAdd(Vector512.Load(r2 + i + 16), xv, b2);
                    b3 = Avx512F.FusedMultiplyAdd(Vector512.Load(r3 + i + 16), xv, b3);
                }
                y[n] = Vector512.Sum(a0 + b0); y[n + 1] = Vector512.Sum(a1 + b1); y[n + 2] = Vector512.Sum(a2 + b2); y[n + 3] = Vector512.Sum(a3 + b3);
            }
            else
            {
                var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
                var b0 = a0; var b1 = a0; var b2 = a0; var b3 = a0;
                for (; i + 16 <= k; i += 16, ahead += Rows * 64)
                {
                    Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                    var xv = Vector256.Load(x + i);
                    a0 = Fma.MultiplyAdd(Vector256.Load(r0 + i), xv, a0);
                    a1 = Fma.MultiplyAdd(Vector256.Load(r1 + i), xv, a1);
                    a2 = Fma.MultiplyAdd(Vector256.Load(r2 + i), xv, a2);
                    a3 = Fma.MultiplyAdd(Vector256.Load(r3 + i), xv, a3);
                    xv = Vector256.Load(x + i + 8);
                    b0 = Fma.MultiplyAdd(Vector256.Load(r0 + i + 8), xv, b0);
                    b1 = Fma.MultiplyAdd(Vector256.Load(r1 + i + 8), xv, b1);
                    b2 = Fma.MultiplyAdd(Vector256.Load(r2 + i + 8), xv, b2);
                    b3 = Fma.MultiplyAdd(Vector256.Load(r3 + i + 8), xv, b3);
                }
                y[n] = Vector256.Sum(a0 + b0); y[n + 1] = Vector256.Sum(a1 + b1); y[n + 2] = Vector256.Sum(a2 + b2); y[n + 3] = Vector256.Sum(a3 + b3);
            }
            for (; i < k; i++)
            {
                y[n] += r0[i] * x[i]; y[n + 1] += r1[i] * x[i]; y[n + 2] += r2[i] * x[i]; y[n + 3] += r3[i] * x[i];
            }
        }
        for (; n < n1; n++) y[n] = RowF32(w + n * k, k, x);
    }

    /// <summary>
    /// One output of W·x in the order every float32 loop here sums one (the loops of one to four
    /// rows of x alike): two accumulators taking K's vectors in turn (two independent FMA chains:
    /// one was ~10% slower reading a row at a time, ~55 against ~63–68 GB/s), added, the lanes
    /// summed, then the last K mod two vectors one at a time. The grouped loops' leftover rows come here, so an output is
    /// summed the same way wherever the grouping puts its row (<see cref="BatchInvariance"/>).
    /// </summary>
    internal static float RowF32(float* r, long k, float* x)
    {
        long i = 0;
        float s;
        if (Use512)
        {
            var a = Vector512<float>.Zero; var b = a;
            for (; i + 32 <= k; i += 32)
            {
                a = Avx512F.FusedMultiplyAdd(Vector512.Load(r + i), Vector512.Load(x + i), a);
                b = Avx512F.FusedMultiplyAdd(Vector512.Load(r + i + 16), Vector512.Load(x + i + 16), b);
            }
            s = Vector512.Sum(a + b);
        }
        else
        {
            var a = Vector256<float>.Zero; var b = a;
            for (; i + 16 <= k; i += 16)
            {
                a = Fma.MultiplyAdd(Vector256.Load(r + i), Vector256.Load(x + i), a);
                b = Fma.MultiplyAdd(Vector256.Load(r + i + 8), Vector256.Load(x + i + 8), b);
            }
            s = Vector256.Sum(a + b);
        }
        for (; i < k; i++) s += r[i] * x[i];
        return s;
    }

    /// <summary>
    /// The bf16 counterpart of <see cref="RowF32"/>: even and odd products in two accumulators per
    /// lane over the pairs of K, added, the lanes summed, then the last element when K is odd.
    /// </summary>
    internal static float RowBf16(ushort* r, long k, float* xEven, float* xOdd)
    {
        long pairs = k / 2, j = 0;
        uint* p = (uint*)r;
        float s;
        if (Use512)
        {
            var high = Vector512.Create(0xFFFF0000u);
            var a = Vector512<float>.Zero; var b = a;
            for (; j + 16 <= pairs; j += 16) Step(Vector512.Load(p + j), Vector512.Load(xEven + j), Vector512.Load(xOdd + j), high, ref a, ref b);
            s = Vector512.Sum(a + b);
        }
        else
        {
            var high = Vector256.Create(0xFFFF0000u);
            var a = Vector256<float>.Zero; var b = a;
            for (; j + 8 <= pairs; j += 8) Step(Vector256.Load(p + j), Vector256.Load(xEven + j), Vector256.Load(xOdd + j), high, ref a, ref b);
            s = Vector256.Sum(a + b);
        }
        for (long i = 2 * j; i < k; i++) s += ToFloat(r[i]) * ((i & 1) == 0 ? xEven[i / 2] : xOdd[i / 2]);
        return s;
    }

    /// <summary>
    /// Rows [n0, n1) of W·x for a float32 weight, one weight row at a time: the rows are
    /// contiguous, so the part is read front to back as one stream that the hardware prefetcher
    /// follows, with no prefetch instructions. On the 2-core AMD EPYC this read the 2B shapes'
    /// 8.3 GB at 64–71 GB/s against 55–64 for <see cref="F32"/> and 66–74 for a bare read (256-bit
    /// loops, in a slower phase: 37 against 34, read 39; one-off program, docs/platform.md);
    /// <see cref="SimdGemv"/> times the two on first use. Each row is summed as <see cref="RowF32"/>
    /// sums it (two accumulators; four, as it had before BatchInvariance, read no faster: 63–72
    /// against 66–70 GB/s in alternating runs), so either loop gives a row the same bits.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void F32RowByRow(float* w, long k, float* x, float* y, long n0, long n1)
    {
        for (long n = n0; n < n1; n++) y[n] = RowF32(w + n * k, k, x);
    }

    /// <summary>
    /// Rows [n0, n1) of W·x for a bf16 weight (raw 16-bit patterns); <paramref name="xEven"/> and
    /// <paramref name="xOdd"/> hold x's elements 0, 2, 4… and 1, 3, 5… as float32.
    /// </summary>
    public static void Bf16(ushort* w, long k, float* xEven, float* xOdd, float* y, long n0, long n1)
    {
        long pairs = k / 2, n = n0;
        if (Use512) n = Bf16Eight(w, k, xEven, xOdd, y, n0, n1);
        long group = Rows * k * sizeof(ushort);
        for (; n + Rows <= n1; n += Rows)
        {
            ushort* row0 = w + n * k;
            uint* r0 = (uint*)row0, r1 = (uint*)(row0 + k), r2 = (uint*)(row0 + 2 * k), r3 = (uint*)(row0 + 3 * k);
            byte* ahead = (byte*)row0 + 2 * group;
            long j = 0;
            if (Use512)
            {
                var high = Vector512.Create(0xFFFF0000u);
                var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
                var b0 = a0; var b1 = a0; var b2 = a0; var b3 = a0;
                for (; j + 16 <= pairs; j += 16, ahead += Rows * 64)
                {
                    Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                    var e = Vector512.Load(xEven + j);
                    var o = Vector512.Load(xOdd + j);
                    Step(Vector512.Load(r0 + j), e, o, high, ref a0, ref b0);
                    Step(Vector512.Load(r1 + j), e, o, high, ref a1, ref b1);
                    Step(Vector512.Load(r2 + j), e, o, high, ref a2, ref b2);
                    Step(Vector512.Load(r3 + j), e, o, high, ref a3, ref b3);
                }
                y[n] = Vector512.Sum(a0 + b0); y[n + 1] = Vector512.Sum(a1 + b1); y[n + 2] = Vector512.Sum(a2 + b2); y[n + 3] = Vector512.Sum(a3 + b3);
            }
            else
            {
                var high = Vector256.Create(0xFFFF0000u);
                var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
                var b0 = a0; var b1 = a0; var b2 = a0; var b3 = a0;
                for (; j + 8 <= pairs; j += 8, ahead += Rows * 32)
                {
                    Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64);
                    var e = Vector256.Load(xEven + j);
                    var o = Vector256.Load(xOdd + j);
                    Step(Vector256.Load(r0 + j), e, o, high, ref a0, ref b0);
                    Step(Vector256.Load(r1 + j), e, o, high, ref a1, ref b1);
                    Step(Vector256.Load(r2 + j), e, o, high, ref a2, ref b2);
                    Step(Vector256.Load(r3 + j), e, o, high, ref a3, ref b3);
                }
                y[n] = Vector256.Sum(a0 + b0); y[n + 1] = Vector256.Sum(a1 + b1); y[n + 2] = Vector256.Sum(a2 + b2); y[n + 3] = Vector256.Sum(a3 + b3);
            }
            for (long i = 2 * j; i < k; i++)
            {
                float xi = (i & 1) == 0 ? xEven[i / 2] : xOdd[i / 2];
                y[n] += ToFloat(row0[i]) * xi; y[n + 1] += ToFloat(row0[k + i]) * xi;
                y[n + 2] += ToFloat(row0[2 * k + i]) * xi; y[n + 3] += ToFloat(row0[3 * k + i]) * xi;
            }
        }
        for (; n < n1; n++) y[n] = RowBf16(w + n * k, k, xEven, xOdd);
    }

    /// <summary>
    /// The AVX-512 bf16 loop over groups of eight rows, the next group prefetched: eight streams in
    /// flight keep memory busier than four (a 2 GiB bf16 weight on two cores: ~45 vs ~38 GB/s).
    /// Returns the first row it left to the four-row loop.
    /// </summary>
    static long Bf16Eight(ushort* w, long k, float* xEven, float* xOdd, float* y, long n0, long n1)
    {
        long pairs = k / 2, half = k / 2, n = n0;
        if ((k & 1) != 0) return n0;   // rows are addressed in 32-bit pairs here: an odd K leaves it to the loop below
        var high = Vector512.Create(0xFFFF0000u);
        for (; n + 8 <= n1; n += 8)
        {
            uint* r = (uint*)(w + n * k);
            byte* ahead = (byte*)r + 8 * k * sizeof(ushort);
            var a0 = Vector512<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            var a4 = a0; var a5 = a0; var a6 = a0; var a7 = a0;
            var b0 = a0; var b1 = a0; var b2 = a0; var b3 = a0;
            var b4 = a0; var b5 = a0; var b6 = a0; var b7 = a0;
            long j = 0;
            for (; j + 16 <= pairs; j += 16, ahead += 8 * 64)
            {
                for (int p = 0; p < 8; p++) Sse.Prefetch0(ahead + p * 64);
                var e = Vector512.Load(xEven + j);
                var o = Vector512.Load(xOdd + j);
                Step(Vector512.Load(r + j), e, o, high, ref a0, ref b0);
                Step(Vector512.Load(r + half + j), e, o, high, ref a1, ref b1);
                Step(Vector512.Load(r + 2 * half + j), e, o, high, ref a2, ref b2);
                Step(Vector512.Load(r + 3 * half + j), e, o, high, ref a3, ref b3);
                Step(Vector512.Load(r + 4 * half + j), e, o, high, ref a4, ref b4);
                Step(Vector512.Load(r + 5 * half + j), e, o, high, ref a5, ref b5);
                Step(Vector512.Load(r + 6 * half + j), e, o, high, ref a6, ref b6);
                Step(Vector512.Load(r + 7 * half + j), e, o, high, ref a7, ref b7);
            }
            Span<float> s = [Vector512.Sum(a0 + b0), Vector512.Sum(a1 + b1), Vector512.Sum(a2 + b2), Vector512.Sum(a3 + b3),
                             Vector512.Sum(a4 + b4), Vector512.Sum(a5 + b5), Vector512.Sum(a6 + b6), Vector512.Sum(a7 + b7)];
            for (long i = 2 * j; i < k; i++)
            {
                float xi = (i & 1) == 0 ? xEven[i / 2] : xOdd[i / 2];
                for (int row = 0; row < 8; row++) s[row] += ToFloat(w[(n + row) * k + i]) * xi;
            }
            for (int row = 0; row < 8; row++) y[n + row] = s[row];
        }
        return n;
    }

    /// <summary>
    /// even(v)·e into <paramref name="even"/> and odd(v)·o into <paramref name="odd"/> for 32 bf16
    /// weights read as 16 pairs: two independent chains (neither FMA waits on the other), added
    /// once at the end — the order every bf16 loop here sums in (<see cref="RowBf16"/>).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    static void Step(Vector512<uint> v, Vector512<float> e, Vector512<float> o, Vector512<uint> high, ref Vector512<float> even, ref Vector512<float> odd)
    {
        even = Avx512F.FusedMultiplyAdd(Avx512F.ShiftLeftLogical(v, 16).AsSingle(), e, even);
        odd = Avx512F.FusedMultiplyAdd((v & high).AsSingle(), o, odd);
    }

    /// <summary>The same with 256-bit vectors (16 bf16 weights as 8 pairs).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    static void Step(Vector256<uint> v, Vector256<float> e, Vector256<float> o, Vector256<uint> high, ref Vector256<float> even, ref Vector256<float> odd)
    {
        even = Fma.MultiplyAdd(Avx2.ShiftLeftLogical(v, 16).AsSingle(), e, even);
        odd = Fma.MultiplyAdd((v & high).AsSingle(), o, odd);
    }

    /// <summary>
    /// Reads [s, e) once with no arithmetic beyond a running sum (the read ceiling the loops above
    /// are measured against; <see cref="SimdGemv.ReadThrough"/>).
    /// </summary>
    public static float ReadOnly(byte* s, byte* e)
    {
        var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
        for (; s + 128 <= e; s += 128)
        {
            a0 += Vector256.Load((float*)s); a1 += Vector256.Load((float*)(s + 32));
            a2 += Vector256.Load((float*)(s + 64)); a3 += Vector256.Load((float*)(s + 96));
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }

    public static float ToFloat(ushort bf16) => BitConverter.Int32BitsToSingle(bf16 << 16);

    /// <summary>float32 → bf16 with round-to-nearest-even, as libtorch converts (NaN stays NaN).</summary>
    public static ushort ToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40);
        return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }
}
