/*
 * y[b·ys + n] = bias[n] + Σ_k x[b·xs + k]·W[n, k] for rows b < m of x and weight rows [n0, n1) of a
 * row-major float32 weight W [N, K]: a prefill chunk's projection (many rows of x), float32 sums.
 *
 * Why it exists: libtorch's float32 GEMM ran at 149–161 GFLOP/s on the 2-core AMD EPYC where
 * plain AVX-512 FMAs reach ~400 (its BLAS takes a 256-bit path on that CPU), which capped a 2B
 * f32 prefill near 40 tokens/s. The same shapes through this loop ran at ~340 GFLOP/s there
 * (docs/benchmarks.md). It is the textbook blocked form: a block of KC weight columns of NC weight
 * rows is packed, transposed, into panels of 32 (so the weight side of the inner loop is two
 * contiguous 64-byte loads from L2), and MR = 12 rows of x at a time are multiplied into 12 × 32
 * float32 sums held in 24 registers, each x element broadcast once per k. The packing reads the
 * weight once per call, 16 × 16 tiles transposed in registers (a scalar transpose had cost a
 * quarter of the time at 128 rows of x: 244 → 321 GFLOP/s, and 168 → 230 at 64 rows).
 *
 * The function is self-contained (no calls, no constants in memory, no relocations), so its
 * machine code can be embedded (F32GemmCode.cs, written by scripts/native-kernels.sh) and mapped
 * executable at run time; the C# side checks it against exact sums before using it. The caller
 * gives each thread its own pack buffer of NC·KC floats. System V x86-64 calling convention.
 */
#include <immintrin.h>

#define MR 12
#define NR 32
#define NC 256
#define KC 256

#include "pack_panels.h"   /* start_sums, transpose16, pack_panel: the weight block into panels [kc][32] */

/* R rows of x (xs apart, starting at column k0) times one packed panel [kc][32]; the sums start
   from y (add = 1), from the bias (bias != 0) or from zero; the first `cols` columns are stored. */
static inline __attribute__((always_inline)) void micro(const int R, const float *p, long kc, const float *x, long xs,
    float *y, long ys, const float *bias, int add, int cols)
{
    __m512 a0[MR], a1[MR];
    __mmask16 m0, m1;
    start_sums(R, cols, y, ys, bias, add, a0, a1, &m0, &m1);
    for (long i = 0; i < kc; i++)
    {
        __m512 w0 = _mm512_loadu_ps(p + i * NR), w1 = _mm512_loadu_ps(p + i * NR + 16);
#pragma GCC unroll 12
        for (int b = 0; b < R; b++)
        {
            __m512 xv = _mm512_set1_ps(x[b * xs + i]);
            a0[b] = _mm512_fmadd_ps(xv, w0, a0[b]);
            a1[b] = _mm512_fmadd_ps(xv, w1, a1[b]);
        }
    }
#pragma GCC unroll 12
    for (int b = 0; b < R; b++)
    {
        _mm512_mask_storeu_ps(y + b * ys, m0, a0[b]);
        _mm512_mask_storeu_ps(y + b * ys + 16, m1, a1[b]);
    }
}

/* One call per row count, so each loop above is compiled with its unused registers removed. */
static inline __attribute__((always_inline)) void micro_rows(int rows, const float *p, long kc, const float *x, long xs,
    float *y, long ys, const float *bias, int add, int cols)
{
    switch (rows)
    {
    case 1: micro(1, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 2: micro(2, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 3: micro(3, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 4: micro(4, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 5: micro(5, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 6: micro(6, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 7: micro(7, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 8: micro(8, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 9: micro(9, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 10: micro(10, p, kc, x, xs, y, ys, bias, add, cols); break;
    case 11: micro(11, p, kc, x, xs, y, ys, bias, add, cols); break;
    default: micro(12, p, kc, x, xs, y, ys, bias, add, cols); break;
    }
}

/* The unpacked path: R (≤ DR) rows of x times 16 weight rows from n (the first `rows` stored),
   the whole of K in one run of sums. Each output's sum is the packed path's, operation for
   operation — from the bias or zero, one FMA per k in the same order, the sums that path parks
   in y between K blocks kept in registers instead (a float stored and loaded is the same float)
   — so a row's bits do not depend on which path ran. Without the packing pass it streams each
   weight row once, start to end, which a few rows of x want: there the kernel is bound by
   reading the weight, not by arithmetic (on one thread of the AMD EPYC up
   to 1.9× faster from 1 to 12 rows, 1.2× at 16: scripts/gemm-paths.sh; the C# side times both). */
#define DR 16
static inline __attribute__((always_inline)) void direct(const int R, const float *w, long k, long n, int rows,
    const float *x, long xs, const float *bias, float *y, long ys)
{
    __m512 a[DR];   /* with the 16 of a tile: every register (some sums wait on the stack while a tile is transposed) */
    __mmask16 mask = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1);
    __m512 s = bias ? _mm512_maskz_loadu_ps(mask, bias + n) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int b = 0; b < R; b++) a[b] = s;
    long body = k - k % 16;
    for (long i0 = 0; i0 < body; i0 += 16)
    {
        __m512 r[16];
        load_tile((const unsigned *)w, k, n, i0, rows, r);
#pragma GCC unroll 16
        for (int e = 0; e < 16; e++)
        {
#pragma GCC unroll 16
            for (int b = 0; b < R; b++) a[b] = _mm512_fmadd_ps(_mm512_set1_ps(x[b * xs + i0 + e]), r[e], a[b]);
        }
    }
    for (long i = body; i < k; i++)
    {
        __m512 wv = load_column((const unsigned *)w, k, n, i, rows);
#pragma GCC unroll 16
        for (int b = 0; b < R; b++) a[b] = _mm512_fmadd_ps(_mm512_set1_ps(x[b * xs + i]), wv, a[b]);
    }
#pragma GCC unroll 16
    for (int b = 0; b < R; b++) _mm512_mask_storeu_ps(y + b * ys + n, mask, a[b]);
}

static inline __attribute__((always_inline)) void direct_rows(int rows_x, const float *w, long k, long n, int rows,
    const float *x, long xs, const float *bias, float *y, long ys)
{
    switch (rows_x)
    {
    case 1: direct(1, w, k, n, rows, x, xs, bias, y, ys); break;
    case 2: direct(2, w, k, n, rows, x, xs, bias, y, ys); break;
    case 3: direct(3, w, k, n, rows, x, xs, bias, y, ys); break;
    case 4: direct(4, w, k, n, rows, x, xs, bias, y, ys); break;
    case 5: direct(5, w, k, n, rows, x, xs, bias, y, ys); break;
    case 6: direct(6, w, k, n, rows, x, xs, bias, y, ys); break;
    case 7: direct(7, w, k, n, rows, x, xs, bias, y, ys); break;
    case 8: direct(8, w, k, n, rows, x, xs, bias, y, ys); break;
    case 9: direct(9, w, k, n, rows, x, xs, bias, y, ys); break;
    case 10: direct(10, w, k, n, rows, x, xs, bias, y, ys); break;
    case 11: direct(11, w, k, n, rows, x, xs, bias, y, ys); break;
    case 12: direct(12, w, k, n, rows, x, xs, bias, y, ys); break;
    case 13: direct(13, w, k, n, rows, x, xs, bias, y, ys); break;
    case 14: direct(14, w, k, n, rows, x, xs, bias, y, ys); break;
    case 15: direct(15, w, k, n, rows, x, xs, bias, y, ys); break;
    default: direct(16, w, k, n, rows, x, xs, bias, y, ys); break;
    }
}

/* pack: NC·KC floats, or null for the unpacked path (same bits; the caller takes it for a few rows of x). */
void gemm_f32(const float *w, long k, const float *x, long xs, long m, const float *bias,
    float *y, long ys, long n0, long n1, float *pack)
{
    if (!pack)
    {
        for (long n = n0; n < n1; n += 16)
            for (long b = 0; b < m; b += DR)
                direct_rows(m - b < DR ? (int)(m - b) : DR, w, k, n, n1 - n < 16 ? (int)(n1 - n) : 16,
                    x + b * xs, xs, bias, y + b * ys, ys);
        return;
    }
    for (long nc = n0; nc < n1; nc += NC)
    {
        long ne = nc + NC < n1 ? nc + NC : n1;
        for (long k0 = 0; k0 < k; k0 += KC)
        {
            long kc = k0 + KC < k ? KC : k - k0;
            /* Pack W[nc..ne, k0..k0+kc] as panels [kc][32], weight rows past ne as zeros. */
            for (long n = nc; n < ne; n += NR)
                pack_panel((const unsigned *)w, k, n, k0, kc, ne - n < NR ? (int)(ne - n) : NR, (unsigned *)(pack + (n - nc) * kc));
            for (long b = 0; b < m; b += MR)
            {
                int rows = m - b < MR ? (int)(m - b) : MR;
                for (long n = nc; n < ne; n += NR)
                {
                    int cols = ne - n < NR ? (int)(ne - n) : NR;
                    micro_rows(rows, pack + (n - nc) * kc, kc, x + b * xs + k0, xs, y + b * ys + n, ys,
                        k0 == 0 && bias ? bias + n : 0, k0 != 0, cols);
                }
            }
        }
    }
}
