/*
 * The model's GEMM kernels (src/RecurrentGemma.Model/Native) alone, one thread: the packed path
 * against the unpacked one for a few rows of x on a [7680, 2560] weight (a 2B MLP projection),
 * after checking that both give the same bits on shapes with tails. A developer's timing for
 * docs/benchmarks.md, not part of the build; run it with scripts/gemm-paths.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef unsigned short bf16;
void gemm_bf16(const bf16 *w, long k, const bf16 *x, long xs, long m, const float *bias, bf16 *y, long ys, long n0, long n1, unsigned *pack, float *acc);
void gemm_f32(const float *w, long k, const float *x, long xs, long m, const float *bias, float *y, long ys, long n0, long n1, float *pack);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static unsigned seed = 1;
static float rnd(void) { seed = seed * 1103515245 + 12345; return ((seed >> 8) & 0xFFFF) / 32768.0f - 1; }
static bf16 to_bf16(float f) { unsigned u; memcpy(&u, &f, 4); return (bf16)(u >> 16); }
static int by_value(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

/* Both paths over n weight rows (in parts of 256, as the C# side calls them), bit for bit. */
static int same_bits(long n, long k, long m, int bias)
{
    long xs = k + 3, ys = n + 5;
    bf16 *w = malloc(n * k * 2), *x = malloc(m * xs * 2), *y1 = calloc(m * ys, 2), *y2 = calloc(m * ys, 2);
    float *wf = malloc(n * k * 4), *xf = malloc(m * xs * 4), *z1 = calloc(m * ys, 4), *z2 = calloc(m * ys, 4), *b = malloc(n * 4);
    unsigned *pack = aligned_alloc(64, 256 * 256 * 4);
    float *acc = malloc(m * 256 * 4), *pf = aligned_alloc(64, 256 * 256 * 4);
    for (long i = 0; i < n * k; i++) { w[i] = to_bf16(rnd()); wf[i] = rnd(); }
    for (long i = 0; i < m * xs; i++) { x[i] = to_bf16(rnd() * 2); xf[i] = rnd(); }
    for (long i = 0; i < n; i++) b[i] = rnd();
    for (long n0 = 0; n0 < n; n0 += 256)
    {
        long n1 = n0 + 256 < n ? n0 + 256 : n;
        gemm_bf16(w, k, x, xs, m, bias ? b : 0, y1, ys, n0, n1, pack, acc);
        gemm_bf16(w, k, x, xs, m, bias ? b : 0, y2, ys, n0, n1, 0, 0);
        gemm_f32(wf, k, xf, xs, m, bias ? b : 0, z1, ys, n0, n1, pf);
        gemm_f32(wf, k, xf, xs, m, bias ? b : 0, z2, ys, n0, n1, 0);
    }
    int same = !memcmp(y1, y2, m * ys * 2) && !memcmp(z1, z2, m * ys * 4);
    free(w); free(x); free(y1); free(y2); free(wf); free(xf); free(z1); free(z2); free(b); free(pack); free(acc); free(pf);
    return same;
}

int main(void)
{
    long shapes[][2] = { { 45, 600 }, { 33, 18 }, { 256, 2560 }, { 300, 1032 }, { 7, 30 } };
    for (int s = 0; s < 5; s++)
        for (int m = 1; m <= 30; m += m < 17 ? 1 : 7)
            for (int bias = 0; bias < 2; bias++)
                if (!same_bits(shapes[s][0], shapes[s][1], m, bias))
                {
                    printf("the paths differ: n=%ld k=%ld m=%d bias=%d\n", shapes[s][0], shapes[s][1], m, bias);
                    return 1;
                }
    printf("same bits on every checked shape\n");

    enum { Rounds = 9 };
    long n = 7680, k = 2560;
    bf16 *w = malloc(n * k * 2), *x = malloc(32 * k * 2), *y = malloc(32 * n * 2);
    float *wf = malloc(n * k * 4), *xf = malloc(32 * k * 4), *yf = malloc(32 * n * 4);
    for (long i = 0; i < n * k; i++) { w[i] = to_bf16(rnd()); wf[i] = rnd(); }
    for (long i = 0; i < 32 * k; i++) { x[i] = to_bf16(rnd()); xf[i] = rnd(); }
    unsigned *pack = aligned_alloc(64, 256 * 256 * 4);
    float *acc = malloc(32 * 256 * 4), *pf = aligned_alloc(64, 256 * 256 * 4);
    const char *names[4] = { "bf16 packed", "bf16 unpacked", "f32 packed", "f32 unpacked" };
    printf("ms per [7680, 2560] weight, one thread, median (min-max) of %d rounds after one warm-up:\n", Rounds);
    int rows[] = { 1, 8, 12, 16, 24 };
    for (int r = 0; r < 5; r++)
    {
        int m = rows[r];
        double t[4][Rounds];
        for (int round = -1; round < Rounds; round++)
            for (int path = 0; path < 4; path++)
            {
                double start = now();
                for (long n0 = 0; n0 < n; n0 += 256)
                    if (path < 2) gemm_bf16(w, k, x, k, m, 0, y, n, n0, n0 + 256, path ? 0 : pack, acc);
                    else gemm_f32(wf, k, xf, k, m, 0, yf, n, n0, n0 + 256, path == 3 ? 0 : pf);
                if (round >= 0) t[path][round] = (now() - start) * 1e3;
            }
        printf("%2d rows", m);
        for (int path = 0; path < 4; path++)
        {
            qsort(t[path], Rounds, sizeof(double), by_value);
            printf(" | %s %.2f (%.2f-%.2f)", names[path], t[path][Rounds / 2], t[path][0], t[path][Rounds - 1]);
        }
        printf("\n");
    }
    return 0;
}
