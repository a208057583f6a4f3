/*
 * Rows [n0, n1) of y = W·xᵀ for a row-major bf16 weight W [N, K] and 1–4 bf16 rows of x, with
 * float32 sums, through the AVX512-BF16 dot-product instruction (VDPBF16PS: 32 bf16 products added
 * into 16 float32 lanes in one instruction). .NET 10 exposes no intrinsic for it, and the C#
 * kernel in GemvKernels.cs needs a shift, a mask and two FMAs for the same 32 weights, which on
 * the 2-core AMD EPYC left a batch-1 bf16 decode step compute-bound at ~1.25x a plain read of
 * its weights (docs/benchmarks.md). With one row of x, one weight row at a time, each 64-byte
 * piece of it used while in a register, so the weight is read front to back as a single stream
 * that the hardware prefetcher follows; two accumulators per sum, taking its 32-element pieces in
 * turn, hide the instruction's latency (one chain was ~8% slower on the 2-core EPYC). With two to
 * four rows of x, two weight rows at a time share each load of x. More than four rows of x made
 * the loop arithmetic-bound (8 rows: ~16 GB/s of weights on the 2-core EPYC), so it stops at four;
 * SimdGemv runs more rows as several passes of four over blocks of weight rows that stay in L2.
 * Every sum is taken in one order whatever the row count (see rows_kernel), so a row of x gets
 * the same bits alone as in any batch: seeded sampling depends on that (BatchInvariance.cs). An
 * earlier layout, four weight rows by four rows of x with one accumulator each, ran the L2 passes
 * faster (16 rows: ~430 vs ~315 GFLOP/s) but summed one row of x in another order.
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

/* R rows of x against weight rows [n0, n1), G weight rows at a time (each weight load used for
   every row of x, each x load for G weight rows), then any last weight row alone. Every sum is two
   accumulators over K, taking its 32-element pieces in turn (two independent chains, so the
   instruction's latency is hidden with a single weight stream), added, its lanes reduced, then the
   last K mod 64 products one at a time: the same order for every R and G and every position of a
   weight row, so a row of x gets the same bits alone as beside three others (BatchInvariance). The
   caller passes a multiple of G weight rows. */
static inline __attribute__((always_inline)) void rows_kernel(const int R, const int G, const uint16_t *w, long k,
    const uint16_t *x, long xs, float *y, long ys, long n0, long n1)
{
    long body = k - k % 64, n = n0;
    for (; n + G <= n1; n += G)
    {
        const uint16_t *r = w + n * k;
        __m512 acc[2][4][2];
#pragma GCC unroll 2
        for (int j = 0; j < G; j++)
#pragma GCC unroll 4
            for (int b = 0; b < R; b++) acc[j][b][0] = acc[j][b][1] = _mm512_setzero_ps();
        for (long i = 0; i < body; i += 64)
        {
#pragma GCC unroll 2
            for (int u = 0; u < 2; u++)
            {
                __m512bh wv[2];
#pragma GCC unroll 2
                for (int j = 0; j < G; j++) wv[j] = (__m512bh)_mm512_loadu_si512(r + j * k + i + 32 * u);
#pragma GCC unroll 4
                for (int b = 0; b < R; b++)
                {
                    __m512bh xv = (__m512bh)_mm512_loadu_si512(x + b * xs + i + 32 * u);
#pragma GCC unroll 2
                    for (int j = 0; j < G; j++) acc[j][b][u] = _mm512_dpbf16_ps(acc[j][b][u], wv[j], xv);
                }
            }
        }
        for (int j = 0; j < G; j++)
            for (int b = 0; b < R; b++)
            {
                float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[j][b][0], acc[j][b][1]));
                for (long i = body; i < k; i++)
                    s += bf16_to_float(r[j * k + i]) * bf16_to_float(x[b * xs + i]);
                y[b * ys + n + j] = s;
            }
    }
}

/* rows: 1–4 (anything else computes nothing; the caller never asks for it). */
void gemv_bf16_dot(const uint16_t *w, long k, const uint16_t *x, long xs, long rows, float *y, long ys, long n0, long n1)
{
    long m = n0 + (n1 - n0) / 2 * 2;   /* pairs of weight rows for 2–4 rows of x, then the last one alone */
    if (rows == 1) rows_kernel(1, 1, w, k, x, xs, y, ys, n0, n1);
    else if (rows == 2) { rows_kernel(2, 2, w, k, x, xs, y, ys, n0, m); rows_kernel(2, 1, w, k, x, xs, y, ys, m, n1); }
    else if (rows == 3) { rows_kernel(3, 2, w, k, x, xs, y, ys, n0, m); rows_kernel(3, 1, w, k, x, xs, y, ys, m, n1); }
    else if (rows == 4) { rows_kernel(4, 2, w, k, x, xs, y, ys, n0, m); rows_kernel(4, 1, w, k, x, xs, y, ys, m, n1); }
}
