/*
 * y[b·ys + n] = bf16(bias[n] + Σ_k x[b·xs + k]·W[n, k]) for rows b < m of x and weight rows
 * [n0, n1) of a row-major bf16 weight W [N, K] (K even), bf16 x and y, float32 sums rounded once
 * (to nearest even): a prefill chunk's or a large decode batch's bf16 projection.
 *
 * Why it exists: on the 2-core Intel Xeon (AVX512_BF16, no AMX) libtorch's bf16 GEMM ran at ~140
 * GFLOP/s, below its own float32 GEMM (~180–240), so a 2B bf16 prefill there was no faster than
 * f32 (docs/benchmarks.md). The CPU's bf16 dot-product instruction does 32 multiply-adds per
 * instruction, twice an f32 FMA's 16. On the AMD EPYC this loop ran at about libtorch's rate; the
 * C# side times it against the other paths on first use and keeps whichever is faster.
 *
 * The form is F32's (gemm_f32.c) with pairs of bf16 as its 32-bit units: a block of KC pairs of
 * weight columns of NC weight rows is packed, transposed, into panels [KC][32 rows][2] (the same
 * 16 × 16 register transpose, on 32-bit pairs), and MR = 12 rows of x times 32 outputs are summed
 * in 24 registers, each pair of x broadcast once per k pair (VDPBF16PS: dst += a₀b₀ + a₁b₁ for
 * each of 16 lanes). The sums of a K block beyond the first live in a per-thread float32 scratch
 * `acc` of m × NC floats; the last K block rounds them to bf16 into y.
 *
 * Self-contained (no calls, no constants in memory, no relocations), so its machine code can be
 * embedded (Bf16GemmCode.cs, written by scripts/native-kernels.sh) and mapped executable at run
 * time; the C# side checks it against exact sums before using it. System V x86-64.
 */
#include <immintrin.h>

#define MR 12
#define NR 32
#define NC 256
#define KC 256   /* pairs of bf16 per K block: 512 columns */

typedef unsigned short bf16;
typedef unsigned pair;

#include "pack_panels.h"   /* start_sums, transpose16, pack_panel (pairs as 32-bit units), load_unit */

/* R rows of x (xs elements apart, starting at pair column k0) times one packed panel [kc][32]
   pairs. Sums start from acc (add = 1), the bias (bias != 0) or zero; the first `cols` of 32
   columns are stored: rounded to bf16 into y when last, else as floats into acc (NC apart). */
static inline __attribute__((always_inline)) void micro(const int R, const pair *p, long kc, const bf16 *x, long xs,
    float *acc, bf16 *y, long ys, const float *bias, int add, int last, int cols)
{
    __m512 a0[MR], a1[MR];
    __mmask16 m0, m1;
    start_sums(R, cols, acc, NC, bias, add, a0, a1, &m0, &m1);
    for (long i = 0; i < kc; i++)
    {
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(p + i * NR), w1 = (__m512bh)_mm512_loadu_si512(p + i * NR + 16);
#pragma GCC unroll 12
        for (int b = 0; b < R; b++)
        {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)load_unit(x + b * xs + 2 * i));
            a0[b] = _mm512_dpbf16_ps(a0[b], w0, xv);
            a1[b] = _mm512_dpbf16_ps(a1[b], w1, xv);
        }
    }
#pragma GCC unroll 12
    for (int b = 0; b < R; b++)
    {
        if (last)
        {
            _mm256_mask_storeu_epi16(y + b * ys, m0, (__m256i)_mm512_cvtneps_pbh(a0[b]));
            _mm256_mask_storeu_epi16(y + b * ys + 16, m1, (__m256i)_mm512_cvtneps_pbh(a1[b]));
        }
        else
        {
            _mm512_mask_storeu_ps(acc + b * NC, m0, a0[b]);
            _mm512_mask_storeu_ps(acc + b * NC + 16, m1, a1[b]);
        }
    }
}

/* One call per row count, so each loop above is compiled with its unused registers removed. */
static inline __attribute__((always_inline)) void micro_rows(int rows, const pair *p, long kc, const bf16 *x, long xs,
    float *acc, bf16 *y, long ys, const float *bias, int add, int last, int cols)
{
    switch (rows)
    {
    case 1: micro(1, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 2: micro(2, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 3: micro(3, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 4: micro(4, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 5: micro(5, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 6: micro(6, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 7: micro(7, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 8: micro(8, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 9: micro(9, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 10: micro(10, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    case 11: micro(11, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    default: micro(12, p, kc, x, xs, acc, y, ys, bias, add, last, cols); break;
    }
}

/* The unpacked path: R (≤ DR) rows of x times 16 weight rows from n (the first `rows` stored),
   the whole of K in one run of sums. Each output's sum is the packed path's, operation for
   operation — from the bias or zero, one VDPBF16PS per k pair in the same order, the float32
   sums that path parks in acc between K blocks kept in registers instead (a float stored and
   loaded is the same float), one rounding to bf16 — so a row's bits do not depend on which path
   ran. Without the packing pass it streams each weight row once, start to end, which a few rows
   of x want: there the kernel is bound by reading the weight, not by arithmetic (on one thread
   of the AMD EPYC up to 1.9× faster from 1 to 12 rows, near level at 16 in bf16:
   scripts/gemm-paths.sh; the C# side times both). */
#define DR 16
static inline __attribute__((always_inline)) void direct(const int R, const pair *w, long kp, long n, int rows,
    const bf16 *x, long xs, const float *bias, bf16 *y, long ys)
{
    __m512 a[DR];   /* with the 16 of a tile: every register (some sums wait on the stack while a tile is transposed) */
    __mmask16 mask = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1);
    __m512 s = bias ? _mm512_maskz_loadu_ps(mask, bias + n) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int b = 0; b < R; b++) a[b] = s;
    long body = kp - kp % 16;
    for (long i0 = 0; i0 < body; i0 += 16)
    {
        __m512 r[16];
        load_tile(w, kp, n, i0, rows, r);
#pragma GCC unroll 16
        for (int e = 0; e < 16; e++)
        {
#pragma GCC unroll 16
            for (int b = 0; b < R; b++)
                a[b] = _mm512_dpbf16_ps(a[b], (__m512bh)r[e], (__m512bh)_mm512_set1_epi32((int)load_unit(x + b * xs + 2 * (i0 + e))));
        }
    }
    for (long i = body; i < kp; i++)
    {
        __m512bh wv = (__m512bh)load_column(w, kp, n, i, rows);
#pragma GCC unroll 16
        for (int b = 0; b < R; b++)
            a[b] = _mm512_dpbf16_ps(a[b], wv, (__m512bh)_mm512_set1_epi32((int)load_unit(x + b * xs + 2 * i)));
    }
#pragma GCC unroll 16
    for (int b = 0; b < R; b++) _mm256_mask_storeu_epi16(y + b * ys + n, mask, (__m256i)_mm512_cvtneps_pbh(a[b]));
}

static inline __attribute__((always_inline)) void direct_rows(int rows_x, const pair *w, long kp, long n, int rows,
    const bf16 *x, long xs, const float *bias, bf16 *y, long ys)
{
    switch (rows_x)
    {
    case 1: direct(1, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 2: direct(2, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 3: direct(3, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 4: direct(4, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 5: direct(5, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 6: direct(6, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 7: direct(7, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 8: direct(8, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 9: direct(9, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 10: direct(10, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 11: direct(11, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 12: direct(12, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 13: direct(13, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 14: direct(14, w, kp, n, rows, x, xs, bias, y, ys); break;
    case 15: direct(15, w, kp, n, rows, x, xs, bias, y, ys); break;
    default: direct(16, w, kp, n, rows, x, xs, bias, y, ys); break;
    }
}

/* k: columns of W (even); xs, ys: elements between rows of x and y; pack: NC·KC pairs, or null
   for the unpacked path (same bits; the caller takes it for a few rows of x); acc: m·NC floats
   (unused when k ≤ 2·KC or unpacked). */
void gemm_bf16(const bf16 *w, long k, const bf16 *x, long xs, long m, const float *bias,
    bf16 *y, long ys, long n0, long n1, pair *pack, float *acc)
{
    const pair *wp = (const pair *)w;
    long kp = k / 2;
    if (!pack)
    {
        for (long n = n0; n < n1; n += 16)
            for (long b = 0; b < m; b += DR)
                direct_rows(m - b < DR ? (int)(m - b) : DR, wp, kp, n, n1 - n < 16 ? (int)(n1 - n) : 16,
                    x + b * xs, xs, bias, y + b * ys, ys);
        return;
    }
    for (long nc = n0; nc < n1; nc += NC)
    {
        long ne = nc + NC < n1 ? nc + NC : n1;
        for (long k0 = 0; k0 < kp; k0 += KC)
        {
            long kc = k0 + KC < kp ? KC : kp - k0;
            int last = k0 + kc == kp;
            for (long n = nc; n < ne; n += NR)
                pack_panel(wp, kp, n, k0, kc, ne - n < NR ? (int)(ne - n) : NR, pack + (n - nc) * kc);
            for (long b = 0; b < m; b += MR)
            {
                int rows = m - b < MR ? (int)(m - b) : MR;
                for (long n = nc; n < ne; n += NR)
                {
                    int cols = ne - n < NR ? (int)(ne - n) : NR;
                    micro_rows(rows, pack + (n - nc) * kc, kc, x + b * xs + 2 * k0, xs, acc + b * NC + (n - nc),
                        y + b * ys + n, ys, k0 == 0 && bias ? bias + n : 0, k0 != 0, last, cols);
                }
            }
        }
    }
}
