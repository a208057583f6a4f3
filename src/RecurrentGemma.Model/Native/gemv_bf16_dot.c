/*
 * Rows [n0, n1) of y = W·xᵀ for a row-major bf16 weight W [N, K] and 1–4 bf16 rows of x, with
 * float32 sums, through the AVX512-BF16 dot-product instruction (VDPBF16PS: 32 bf16 products added
 * into 16 float32 lanes in one instruction). .NET 10 exposes no intrinsic for it, and the C#
 * kernel in GemvKernels.cs needs a shift, a mask and two FMAs for the same 32 weights, which on
 * the 2-core AMD EPYC left a batch-1 bf16 decode step compute-bound at ~1.25x a plain read of
 * its weights (docs/benchmarks.md). One weight row at a time, each 64-byte piece of it used for
 * every row of x while in a register, so the weight is read front to back as a single stream:
 * the hardware prefetcher keeps up without software prefetches. More than four rows of x made
 * the loop arithmetic-bound (8 rows: ~16 GB/s of weights on the 2-core EPYC), so it stops at four;
 * SimdGemv runs more rows as several passes of four over blocks of weight rows that stay in L2.
 * Those passes read the weight from L2, where one weight row at a time is bound by loads (ten
 * 64-byte loads per eight dot products); with four rows of x, four weight rows at a time share
 * each load of x (eight loads per sixteen dot products, sixteen independent sums). On the 2-core
 * EPYC that took 16 rows of x over 256 KiB blocks from ~315 to ~430 GFLOP/s (a C harness, medians),
 * while a single pass streaming from memory ran at the same speed either way.
 *
 * The function is self-contained (no calls, no constants in memory, no relocations), so its
 * machine code can be embedded in Bf16DotKernel.cs and mapped executable at run time; the C#
 * side checks its results against exact sums before using it. Regenerate the bytes with
 * scripts/native-kernels.sh after editing this file. System V x86-64 calling convention.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline __attribute__((always_inline)) float bf16_to_float(uint16_t v)
{
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* R rows of x (xs elements apart), U independent accumulators per row so that the additions into
   one accumulator do not wait on each other; y[b * ys + n] for row b of x. */
static inline __attribute__((always_inline)) void rows_kernel(const int R, const int U, const uint16_t *w, long k,
    const uint16_t *x, long xs, float *y, long ys, long n0, long n1)
{
    long step = 32L * U, body = k - k % step;
    for (long n = n0; n < n1; n++)
    {
        const uint16_t *r = w + n * k;
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int b = 0; b < R; b++)
#pragma GCC unroll 4
            for (int u = 0; u < U; u++) acc[b][u] = _mm512_setzero_ps();
        for (long i = 0; i < body; i += step)
        {
#pragma GCC unroll 4
            for (int u = 0; u < U; u++)
            {
                __m512bh wv = (__m512bh)_mm512_loadu_si512(r + i + 32 * u);
#pragma GCC unroll 4
                for (int b = 0; b < R; b++)
                    acc[b][u] = _mm512_dpbf16_ps(acc[b][u], wv, (__m512bh)_mm512_loadu_si512(x + b * xs + i + 32 * u));
            }
        }
#pragma GCC unroll 4
        for (int b = 0; b < R; b++)
        {
            __m512 t = acc[b][0];
#pragma GCC unroll 4
            for (int u = 1; u < U; u++) t = _mm512_add_ps(t, acc[b][u]);
            float s = _mm512_reduce_add_ps(t);
            for (long i = body; i < k; i++)   /* the last K mod step elements, one at a time */
                s += bf16_to_float(r[i]) * bf16_to_float(x[b * xs + i]);
            y[b * ys + n] = s;
        }
    }
}

/* Four rows of x against weight rows [n0, n0 + 4·m): four weight rows at a time, sixteen sums. */
static inline __attribute__((always_inline)) void four_by_four(const uint16_t *w, long k, const uint16_t *x, long xs,
    float *y, long ys, long n0, long n1)
{
    long body = k - k % 32;
    for (long n = n0; n < n1; n += 4)
    {
        const uint16_t *r = w + n * k;
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
            for (int b = 0; b < 4; b++) acc[j][b] = _mm512_setzero_ps();
        for (long i = 0; i < body; i += 32)
        {
            __m512bh wv[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) wv[j] = (__m512bh)_mm512_loadu_si512(r + j * k + i);
#pragma GCC unroll 4
            for (int b = 0; b < 4; b++)
            {
                __m512bh xv = (__m512bh)_mm512_loadu_si512(x + b * xs + i);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) acc[j][b] = _mm512_dpbf16_ps(acc[j][b], wv[j], xv);
            }
        }
        for (int j = 0; j < 4; j++)
            for (int b = 0; b < 4; b++)
            {
                float s = _mm512_reduce_add_ps(acc[j][b]);
                for (long i = body; i < k; i++)
                    s += bf16_to_float(r[j * k + i]) * bf16_to_float(x[b * xs + i]);
                y[b * ys + n + j] = s;
            }
    }
}

/* rows: 1–4 (anything else computes nothing; the caller never asks for it). */
void gemv_bf16_dot(const uint16_t *w, long k, const uint16_t *x, long xs, long rows, float *y, long ys, long n0, long n1)
{
    if (rows == 1) rows_kernel(1, 4, w, k, x, xs, y, ys, n0, n1);
    else if (rows == 2) rows_kernel(2, 4, w, k, x, xs, y, ys, n0, n1);
    else if (rows == 3) rows_kernel(3, 2, w, k, x, xs, y, ys, n0, n1);
    else if (rows == 4)
    {
        long m = n0 + (n1 - n0) / 4 * 4;
        four_by_four(w, k, x, xs, y, ys, n0, m);
        rows_kernel(4, 2, w, k, x, xs, y, ys, m, n1);   /* the last one to three weight rows */
    }
}
