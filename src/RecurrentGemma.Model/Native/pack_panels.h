/*
 * Pieces shared by gemm_f32.c and gemm_bf16.c. Packing: a block of weight rows, read as 32-bit units
 * (a float, or a pair of bf16), into panels [kc][NR] — for each unit column k, the NR weight
 * rows' units side by side, so a micro-kernel loads one k's worth of a panel as NR/16 contiguous
 * vectors. Shuffles and copies only: the bits of every unit pass unchanged. And the start of a
 * micro-kernel's float32 sums. And, for the unpacked path of a few rows of x, the weight's units
 * read straight into registers in the panels' layout. Inlined into each kernel (the embedded code may contain no calls
 * and no constants in memory).
 */
#ifndef NR
#error "define NR (the panel width) before including pack_panels.h"
#endif

static inline __attribute__((always_inline)) unsigned load_unit(const void *p)
{
    unsigned v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

/* Columns e of 16 rows r[j] (16 32-bit units each) into out[e] = (r[0][e], ..., r[15][e]);
   shuffles only, so the bits of each unit pass unchanged; immediates only. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16], s[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
    {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
    {
        s[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        s[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
    {
        __m512 x0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88), x1 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xDD);
        __m512 y0 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88), y1 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
        r[4 + c] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
    }
}

/* Units W[n0.., k0..k0+kc] (kp units per weight row) as one panel [kc][NR]: weight rows n0 + j
   for j < rows (≤ NR), zeros after. NR is a multiple of 16. */
static inline __attribute__((always_inline)) void pack_panel(const unsigned *w, long kp, long n0, long k0, long kc, int rows, unsigned *panel)
{
    long body = kc - kc % 16;
    for (int j0 = 0; j0 < NR; j0 += 16)
    {
        if (j0 + 16 <= rows)
        {
            for (long i0 = 0; i0 < body; i0 += 16)   /* 16 × 16 tiles through registers */
            {
                __m512 r[16];
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(w + (n0 + j0 + j) * kp + k0 + i0);
                transpose16(r);
#pragma GCC unroll 16
                for (int e = 0; e < 16; e++) _mm512_storeu_ps(panel + (i0 + e) * NR + j0, r[e]);
            }
            for (int j = j0; j < j0 + 16; j++)
                for (long i = body; i < kc; i++) panel[i * NR + j] = load_unit(w + (n0 + j) * kp + k0 + i);
        }
        else
            for (int j = j0; j < j0 + 16; j++)
            {
                if (j < rows)
                    for (long i = 0; i < kc; i++) panel[i * NR + j] = load_unit(w + (n0 + j) * kp + k0 + i);
                else
                    for (long i = 0; i < kc; i++) panel[i * NR + j] = 0;
            }
    }
}


/* The sums of R rows × 32 columns (a0: columns 0–15, a1: 16–31) start from `from` (rows `stride`
   floats apart) when add, else from the bias or zero; m0, m1 mask the first `cols` columns. */
static inline __attribute__((always_inline)) void start_sums(const int R, int cols, const float *from, long stride,
    const float *bias, int add, __m512 a0[], __m512 a1[], __mmask16 *m0, __mmask16 *m1)
{
    *m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
    *m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    __m512 s0 = bias ? _mm512_maskz_loadu_ps(*m0, bias) : _mm512_setzero_ps();
    __m512 s1 = bias ? _mm512_maskz_loadu_ps(*m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int b = 0; b < R; b++)
    {
        a0[b] = add ? _mm512_maskz_loadu_ps(*m0, from + b * stride) : s0;
        a1[b] = add ? _mm512_maskz_loadu_ps(*m1, from + b * stride + 16) : s1;
    }
}

/* The unpacked path for a few rows of x (each kernel's `direct`): units W[n0 + j, i0..i0+16) of
   16 weight rows, j < rows (zeros past rows), as out[e] = (W[n0][i0 + e], ..., W[n0 + 15][i0 + e])
   — the very vector a packed panel holds for unit column i0 + e, read straight from the weight. */
static inline __attribute__((always_inline)) void load_tile(const unsigned *w, long kp, long n0, long i0, int rows, __m512 r[16])
{
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) r[j] = j < rows ? _mm512_loadu_ps(w + (n0 + j) * kp + i0) : _mm512_setzero_ps();
    transpose16(r);
}

/* Unit column i of 16 weight rows (zeros past rows) as one vector: the tail of K past its last tile. */
static inline __attribute__((always_inline)) __m512 load_column(const unsigned *w, long kp, long n0, long i, int rows)
{
    unsigned t[16];   /* through the stack: lane masks built per lane become constants in memory */
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) t[j] = j < rows ? load_unit(w + (n0 + j) * kp + i) : 0;
    return _mm512_loadu_ps(t);
}
