using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace RecurrentGemma.Model.Modules;

/// <summary>How many rows of x one pass of <see cref="GemvRowsKernels"/> serves (a JIT-time constant).</summary>
internal interface IRowCount { static abstract int Count { get; } }
internal struct TwoRows : IRowCount { public static int Count => 2; }
internal struct ThreeRows : IRowCount { public static int Count => 3; }
internal struct FourRows : IRowCount { public static int Count => 4; }

/// <summary>
/// Y[b, n] = Σ_k W[n, k]·X[b, k] for 2–4 rows of x in one pass over the weight: a small decode
/// batch costs about one weight stream instead of one per row. The row count is a type parameter
/// so the JIT compiles one loop per count with the unused accumulators removed. Two weight rows
/// per pass (2 × 4 accumulators at most); the AVX-512 path only — the AVX2 machines measured so
/// far keep libtorch here (<see cref="SimdGemv"/> checks <see cref="GemvKernels.Has512"/>).
/// </summary>
internal static unsafe class GemvRowsKernels
{
    /// <summary>Rows [n0, n1) for a float32 weight; x is [B, k], y is [B, n] (row stride <paramref name="n"/>).</summary>
    public static void F32<TB>(float* w, long k, float* x, float* y, long n, long n0, long n1) where TB : struct, IRowCount
    {
        int rows = TB.Count;
        long at = n0;
        for (; at + 2 <= n1; at += 2)
        {
            float* r0 = w + at * k, r1 = r0 + k;
            byte* ahead = (byte*)r0 + 4 * k * sizeof(float);
            // Per (row of x, weight row) two accumulators taking K's vectors in turn: the order of
            // GemvKernels.RowF32, so a row of x gets the bits it gets alone (BatchInvariance).
            var a00 = Vector512<float>.Zero; var a01 = a00; var a10 = a00; var a11 = a00;
            var a20 = a00; var a21 = a00; var a30 = a00; var a31 = a00;
            var c00 = a00; var c01 = a00; var c10 = a00; var c11 = a00;
            var c20 = a00; var c21 = a00; var c30 = a00; var c31 = a00;
            long i = 0;
            for (; i + 32 <= k; i += 32, ahead += 256)
            {
                Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                var w0 = Vector512.Load(r0 + i); var w1 = Vector512.Load(r1 + i);
                var v0 = Vector512.Load(r0 + i + 16); var v1 = Vector512.Load(r1 + i + 16);
                var x0 = Vector512.Load(x + i); var y0 = Vector512.Load(x + i + 16);
                a00 = Avx512F.FusedMultiplyAdd(w0, x0, a00); a01 = Avx512F.FusedMultiplyAdd(w1, x0, a01);
                c00 = Avx512F.FusedMultiplyAdd(v0, y0, c00); c01 = Avx512F.FusedMultiplyAdd(v1, y0, c01);
                var x1 = Vector512.Load(x + k + i); var y1 = Vector512.Load(x + k + i + 16);
                a10 = Avx512F.FusedMultiplyAdd(w0, x1, a10); a11 = Avx512F.FusedMultiplyAdd(w1, x1, a11);
                c10 = Avx512F.FusedMultiplyAdd(v0, y1, c10); c11 = Avx512F.FusedMultiplyAdd(v1, y1, c11);
                if (rows > 2)
                {
                    var x2 = Vector512.Load(x + 2 * k + i); var y2 = Vector512.Load(x + 2 * k + i + 16);
                    a20 = Avx512F.FusedMultiplyAdd(w0, x2, a20); a21 = Avx512F.FusedMultiplyAdd(w1, x2, a21);
                    c20 = Avx512F.FusedMultiplyAdd(v0, y2, c20); c21 = Avx512F.FusedMultiplyAdd(v1, y2, c21);
                }
                if (rows > 3)
                {
                    var x3 = Vector512.Load(x + 3 * k + i); var y3 = Vector512.Load(x + 3 * k + i + 16);
                    a30 = Avx512F.FusedMultiplyAdd(w0, x3, a30); a31 = Avx512F.FusedMultiplyAdd(w1, x3, a31);
                    c30 = Avx512F.FusedMultiplyAdd(v0, y3, c30); c31 = Avx512F.FusedMultiplyAdd(v1, y3, c31);
                }
            }
            Span<float> s = [Vector512.Sum(a00 + c00), Vector512.Sum(a01 + c01), Vector512.Sum(a10 + c10), Vector512.Sum(a11 + c11),
                             Vector512.Sum(a20 + c20), Vector512.Sum(a21 + c21), Vector512.Sum(a30 + c30), Vector512.Sum(a31 + c31)];
            for (; i < k; i++)
                for (int b = 0; b < rows; b++)
                {
                    s[2 * b] += r0[i] * x[b * k + i];
                    s[2 * b + 1] += r1[i] * x[b * k + i];
                }
            for (int b = 0; b < rows; b++)
            {
                y[b * n + at] = s[2 * b];
                y[b * n + at + 1] = s[2 * b + 1];
            }
        }
        for (; at < n1; at++)
            for (int b = 0; b < rows; b++) y[b * n + at] = GemvKernels.RowF32(w + at * k, k, x + b * k);   // as one row of x sums it
    }

    /// <summary>
    /// Rows [n0, n1) for a bf16 weight; <paramref name="xEven"/> and <paramref name="xOdd"/> are
    /// [B, (k + 1) / 2]: each row of x split into its even and odd elements as float32.
    /// </summary>
    public static void Bf16<TB>(ushort* w, long k, float* xEven, float* xOdd, float* y, long n, long n0, long n1) where TB : struct, IRowCount
    {
        int rows = TB.Count;
        long pairs = k / 2, half = (k + 1) / 2, at = n0;
        var high = Vector512.Create(0xFFFF0000u);
        for (; at + 2 <= n1; at += 2)
        {
            ushort* row0 = w + at * k;
            uint* r0 = (uint*)row0, r1 = (uint*)(row0 + k);
            byte* ahead = (byte*)row0 + 4 * k * sizeof(ushort);
            // Even and odd products in separate accumulators: two independent FMA chains per
            // (row of x, weight row) instead of one chain of two, so the FMA latency never waits.
            var a00 = Vector512<float>.Zero; var a01 = a00; var a10 = a00; var a11 = a00;
            var a20 = a00; var a21 = a00; var a30 = a00; var a31 = a00;
            var b00 = a00; var b01 = a00; var b10 = a00; var b11 = a00;
            var b20 = a00; var b21 = a00; var b30 = a00; var b31 = a00;
            long j = 0;
            for (; j + 16 <= pairs; j += 16, ahead += 128)
            {
                Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64);
                var v0 = Vector512.Load(r0 + j); var v1 = Vector512.Load(r1 + j);
                var e0 = Avx512F.ShiftLeftLogical(v0, 16).AsSingle(); var o0 = (v0 & high).AsSingle();
                var e1 = Avx512F.ShiftLeftLogical(v1, 16).AsSingle(); var o1 = (v1 & high).AsSingle();
                var xe = Vector512.Load(xEven + j); var xo = Vector512.Load(xOdd + j);
                a00 = Avx512F.FusedMultiplyAdd(e0, xe, a00); b00 = Avx512F.FusedMultiplyAdd(o0, xo, b00);
                a01 = Avx512F.FusedMultiplyAdd(e1, xe, a01); b01 = Avx512F.FusedMultiplyAdd(o1, xo, b01);
                xe = Vector512.Load(xEven + half + j); xo = Vector512.Load(xOdd + half + j);
                a10 = Avx512F.FusedMultiplyAdd(e0, xe, a10); b10 = Avx512F.FusedMultiplyAdd(o0, xo, b10);
                a11 = Avx512F.FusedMultiplyAdd(e1, xe, a11); b11 = Avx512F.FusedMultiplyAdd(o1, xo, b11);
                if (rows > 2)
                {
                    xe = Vector512.Load(xEven + 2 * half + j); xo = Vector512.Load(xOdd + 2 * half + j);
                    a20 = Avx512F.FusedMultiplyAdd(e0, xe, a20); b20 = Avx512F.FusedMultiplyAdd(o0, xo, b20);
                    a21 = Avx512F.FusedMultiplyAdd(e1, xe, a21); b21 = Avx512F.FusedMultiplyAdd(o1, xo, b21);
                }
                if (rows > 3)
                {
                    xe = Vector512.Load(xEven + 3 * half + j); xo = Vector512.Load(xOdd + 3 * half + j);
                    a30 = Avx512F.FusedMultiplyAdd(e0, xe, a30); b30 = Avx512F.FusedMultiplyAdd(o0, xo, b30);
                    a31 = Avx512F.FusedMultiplyAdd(e1, xe, a31); b31 = Avx512F.FusedMultiplyAdd(o1, xo, b31);
                }
            }
            a00 += b00; a01 += b01; a10 += b10; a11 += b11; a20 += b20; a21 += b21; a30 += b30; a31 += b31;
            Span<float> s = [Vector512.Sum(a00), Vector512.Sum(a01), Vector512.Sum(a10), Vector512.Sum(a11),
                             Vector512.Sum(a20), Vector512.Sum(a21), Vector512.Sum(a30), Vector512.Sum(a31)];
            for (long i = 2 * j; i < k; i++)
                for (int b = 0; b < rows; b++)
                {
                    float xi = (i & 1) == 0 ? xEven[b * half + i / 2] : xOdd[b * half + i / 2];
                    s[2 * b] += GemvKernels.ToFloat(row0[i]) * xi;
                    s[2 * b + 1] += GemvKernels.ToFloat(row0[k + i]) * xi;
                }
            for (int b = 0; b < rows; b++)
            {
                y[b * n + at] = s[2 * b];
                y[b * n + at + 1] = s[2 * b + 1];
            }
        }
        for (; at < n1; at++)
            for (int b = 0; b < rows; b++) y[b * n + at] = GemvKernels.RowBf16(w + at * k, k, xEven + b * half, xOdd + b * half);   // as one row of x sums it
    }
}
