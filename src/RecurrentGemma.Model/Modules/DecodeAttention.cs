using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// One decode step of multi-query local attention on the CPU as one pass per sequence: every
/// query head shares the one key/value head, so each ring row is read once for all H heads
/// (scores, float32 softmax, then the value sum), and ring rows the mask hides (a sequence
/// shallower than the window) are not read at all. Through libtorch the same step is a batched
/// product per run of slots, a scale, a mask add, a softmax, a cast and a second product, each
/// over the whole window: at 64 sequences ~30 ms per 2B layer in f32 where the window's bytes
/// stream in ~13 ms (docs/benchmarks.md, issue #9). Scores and the softmax are float32 in both
/// dtypes (the tensor path rounds a bf16 model's scores to bf16 first); the output is rounded to
/// the model dtype once. Its cost follows the keys a batch can see, the tensor path's the whole
/// window, and at a full window libtorch's batched products can be the faster (2B f32, 64 rows, on
/// the Intel Xeon of docs/benchmarks.md: 43 vs 29 ms per layer; at position ~5: 7 vs 32 ms), so
/// Auto takes this pass when the batch's visible keys are below the fraction of a full window at
/// which the two measured level on this machine (<see cref="CrossoverFraction"/>).
/// </summary>
public static unsafe partial class DecodeAttention
{
    /// <summary>CPU tensors of one dtype whose rows are laid out as the pass reads them.</summary>
    internal static bool Applies(Tensor rows, Tensor k, Tensor v, Tensor keysPool, Tensor valuesPool, Tensor mask) =>
        CpuPaths.On(rows) && rows.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && k.dtype == rows.dtype && v.dtype == rows.dtype && keysPool.dtype == rows.dtype && valuesPool.dtype == rows.dtype
        && rows.stride(-1) == 1 && k.stride(-1) == 1 && v.stride(-1) == 1
        && keysPool.is_contiguous() && valuesPool.is_contiguous()
        && mask.dtype == ScalarType.Float32 && mask.stride(-1) == 1
        && mask.size(-1) == keysPool.size(1) + 1;

    /// <summary>
    /// Fewest ring keys one part of a split row scores (tests lower it to split the fixtures'
    /// small windows). A part's fixed cost is reading and scaling every head's query.
    /// </summary>
    public static int MinKeysPerSplit { get; set; } = 256;

    /// <summary>
    /// Parts each row's keys are cut into: with fewer rows than twice the kernel threads, one
    /// part per row would leave cores idle (one sequence on one core), so a row's keys are split
    /// into ranges whose partial softmaxes are merged after (max, sum and weighted values per
    /// range, rescaled to the common max); twice the threads so a late thread only takes fewer.
    /// </summary>
    public static int Splits(int rows, int keys)
    {
        // A split changes the order the row's softmax and value sums are taken in; under
        // BatchInvariance it follows the key count alone (one range per 512 keys), so a row is cut
        // the same way alone as beside 31 others.
        if (BatchInvariance.Enabled) return Math.Max(1, keys / Math.Max(1, 2 * MinKeysPerSplit));
        int wanted = (2 * KernelWorkers.Threads + rows - 1) / rows;
        return Math.Clamp(wanted, 1, Math.Max(1, keys / Math.Max(1, MinKeysPerSplit)));
    }

    /// <param name="rows">[B, H, hd] queries after RoPE (rows may be strided).</param>
    /// <param name="k">[B, 1, hd] this step's key (not yet in the ring).</param>
    /// <param name="v">[B, 1, hd] this step's value.</param>
    /// <param name="keysPool">[N, W, hd] the ring of every slot.</param>
    /// <param name="slots">host: row i's slot.</param>
    /// <param name="mask">[B, H, W + 1] float32 additive mask, ring slots then the new key (the same for every head; rows may be strided).</param>
    /// <returns>[B, H, hd] in the model dtype.</returns>
    internal static Tensor Forward(Tensor rows, Tensor k, Tensor v, Tensor keysPool, Tensor valuesPool,
        long[] slots, Tensor mask, double scale)
    {
        int b = (int)rows.size(0), heads = (int)rows.size(1), hd = (int)rows.size(2), w = (int)keysPool.size(1);
        bool bf16 = rows.dtype == ScalarType.BFloat16;
        int elem = bf16 ? 2 : 4;
        var output = empty(b, heads, hd, rows.dtype);
        byte* qp = (byte*)SimdGemv.Data(rows), kp = (byte*)SimdGemv.Data(k), vp = (byte*)SimdGemv.Data(v);
        byte* keys = (byte*)SimdGemv.Data(keysPool), values = (byte*)SimdGemv.Data(valuesPool), op = (byte*)SimdGemv.Data(output);
        float* mp = (float*)SimdGemv.Data(mask);
        long qRow = rows.stride(0), qHead = rows.stride(1), kRow = k.stride(0), vRow = v.stride(0), maskRow = mask.stride(0);
        float s = (float)scale;
        int n = w + 1;   // ring rows, then the new key
        int splits = Splits(b, n), span = (n + splits - 1) / splits;
        int partial = heads * (hd + 2);   // a range's result: per head its max, its sum, then its weighted values
        float[]? partials = splits > 1 ? ArrayPool<float>.Shared.Rent(b * splits * partial) : null;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // optimized from the first call: the calibration times it then
        void Part(int part)
        {
            int r = part / splits, j0 = part % splits * span, j1 = Math.Min(n, j0 + span), len = j1 - j0;
            float[] scratch = ArrayPool<float>.Shared.Rent(2 * heads * hd + 4 * hd + heads * len + 2 * heads);
            fixed (float* q = scratch)
            {
                float* acc = q + heads * hd, rows4 = acc + heads * hd, p = rows4 + 4 * hd, max = p + heads * len, sum = max + heads;
                for (int h = 0; h < heads; h++)
                    Read(qp + (r * qRow + h * qHead) * elem, bf16, q + h * hd, hd, s);
                float* m = mp + r * maskRow;   // head 0's row: the mask is the same for every head (a broadcast view)
                byte* ringKeys = keys + slots[r] * w * hd * elem, ringValues = values + slots[r] * w * hd * elem;
                byte* newKey = kp + r * kRow * elem, newValue = vp + r * vRow * elem;

                // Scores: each visible key row read once and dotted with every head's query.
                for (int j = j0; j < j1; j++)
                {
                    if (m[j] <= ForwardBatch.MaskValue) { for (int h = 0; h < heads; h++) p[h * len + j - j0] = float.NegativeInfinity; continue; }
                    float* key = RowOf(j < w ? ringKeys + (long)j * hd * elem : newKey, bf16, rows4, hd);
                    Scores(q, heads, hd, key, p + j - j0, len, m[j]);
                }
                for (int h = 0; h < heads; h++) sum[h] = Exponentiate(p + h * len, len, out max[h]);

                // Values: visible rows four at a time, each added to every head's output unnormalized.
                new Span<float>(acc, heads * hd).Clear();
                float** block = stackalloc float*[4];
                int* at = stackalloc int[4];
                int count = 0;
                for (int j = j0; j < j1; j++)
                {
                    if (m[j] <= ForwardBatch.MaskValue) continue;
                    block[count] = RowOf(j < w ? ringValues + (long)j * hd * elem : newValue, bf16, rows4 + count * hd, hd);
                    at[count++] = j - j0;
                    if (count == 4) { AddValues(acc, heads, hd, p, len, block, at, count); count = 0; }
                }
                if (count > 0) AddValues(acc, heads, hd, p, len, block, at, count);
                if (partials is null) Store(acc, sum, heads, hd, bf16, op + (long)r * heads * hd * elem);
                else
                    fixed (float* all = partials)
                    {
                        float* dst = all + (long)part * partial;
                        for (int h = 0; h < heads; h++) { dst[2 * h] = max[h]; dst[2 * h + 1] = sum[h]; }
                        Buffer.MemoryCopy(acc, dst + 2 * heads, heads * hd * 4L, heads * hd * 4L);
                    }
            }
            ArrayPool<float>.Shared.Return(scratch);
        }
        KernelWorkers.Run(b * splits, Part);
        if (partials is not null)
        {
            Merge(partials, b, splits, heads, hd, bf16, op);
            ArrayPool<float>.Shared.Return(partials);
        }
        return output;
    }

    /// <summary>
    /// One row's ranges into its output: each range's weighted values and sum rescaled by
    /// exp(its max − the row's max), summed, divided (a range whose keys were all hidden has sum 0).
    /// </summary>
    static void Merge(float[] partials, int b, int splits, int heads, int hd, bool bf16, byte* op)
    {
        int partial = heads * (hd + 2), elem = bf16 ? 2 : 4;
        float* acc = stackalloc float[hd];
        fixed (float* all = partials)
            for (int r = 0; r < b; r++)
                for (int h = 0; h < heads; h++)
                {
                    float top = float.NegativeInfinity, total = 0;
                    for (int sp = 0; sp < splits; sp++)
                    {
                        float* src = all + (long)(r * splits + sp) * partial;
                        if (src[2 * h + 1] > 0) top = MathF.Max(top, src[2 * h]);
                    }
                    new Span<float>(acc, hd).Clear();
                    for (int sp = 0; sp < splits; sp++)
                    {
                        float* src = all + (long)(r * splits + sp) * partial;
                        if (src[2 * h + 1] <= 0) continue;
                        float f = MathF.Exp(src[2 * h] - top);
                        total += f * src[2 * h + 1];
                        float* vals = src + 2 * heads + h * hd;
                        for (int i = 0; i < hd; i++) acc[i] += f * vals[i];
                    }
                    Store(acc, &total, 1, hd, bf16, op + ((long)r * heads + h) * hd * elem);
                }
    }

    /// <summary>Each head's hd weighted values divided by its sum, in the model dtype at dst.</summary>
    static void Store(float* acc, float* sum, int heads, int hd, bool bf16, byte* dst)
    {
        for (int h = 0; h < heads; h++)
        {
            float inv = 1f / sum[h];
            for (int i = h * hd; i < (h + 1) * hd; i++)
            {
                if (bf16) ((ushort*)dst)[i] = GemvKernels.ToBf16(acc[i] * inv);
                else ((float*)dst)[i] = acc[i] * inv;
            }
        }
    }

    /// <summary>n elements at src (float32 or bf16) into float32 dst, times a scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // optimized from the first call: the calibration times it then
    static void Read(byte* src, bool bf16, float* dst, int n, float scale)
    {
        int i = 0;
        if (bf16)
        {
            ushort* u = (ushort*)src;
            for (; i + 16 <= n; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Load(u + i));
                ((lo << 16).AsSingle() * scale).Store(dst + i);
                ((hi << 16).AsSingle() * scale).Store(dst + i + 8);
            }
            for (; i < n; i++) dst[i] = GemvKernels.ToFloat(u[i]) * scale;
        }
        else
        {
            float* f = (float*)src;
            for (; i + 8 <= n; i += 8) (Vector256.Load(f + i) * scale).Store(dst + i);
            for (; i < n; i++) dst[i] = f[i] * scale;
        }
    }

    /// <summary>A float32 view of one row: the row itself, or its bf16 values widened into tmp.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // optimized from the first call: the calibration times it then
    static float* RowOf(byte* src, bool bf16, float* tmp, int n)
    {
        if (!bf16) return (float*)src;
        Read(src, true, tmp, n, 1f);
        return tmp;
    }

    /// <summary>
    /// p[h·stride] = q_h · key + bias for every head: four heads per pass over the key, so four
    /// independent accumulator chains keep the FMA units busy (one chain waits on its latency).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // optimized from the first call: the calibration times it then
    static void Scores(float* q, int heads, int hd, float* key, float* p, int stride, float bias)
    {
        int h = 0;
        for (; h + 4 <= heads; h += 4)
        {
            float* q0 = q + h * hd, q1 = q0 + hd, q2 = q1 + hd, q3 = q2 + hd;
            var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0;
            int i = 0;
            for (; i + 8 <= hd; i += 8)
            {
                var kv = Vector256.Load(key + i);
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(q0 + i), kv, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(q1 + i), kv, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.Load(q2 + i), kv, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.Load(q3 + i), kv, a3);
            }
            float s0 = Vector256.Sum(a0), s1 = Vector256.Sum(a1), s2 = Vector256.Sum(a2), s3 = Vector256.Sum(a3);
            for (; i < hd; i++) { s0 += q0[i] * key[i]; s1 += q1[i] * key[i]; s2 += q2[i] * key[i]; s3 += q3[i] * key[i]; }
            p[h * stride] = s0 + bias; p[(h + 1) * stride] = s1 + bias; p[(h + 2) * stride] = s2 + bias; p[(h + 3) * stride] = s3 + bias;
        }
        for (; h < heads; h++)
        {
            float* qh = q + h * hd;
            var a0 = Vector256<float>.Zero; var a1 = a0;
            int i = 0;
            for (; i + 16 <= hd; i += 16)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.Load(qh + i), Vector256.Load(key + i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.Load(qh + i + 8), Vector256.Load(key + i + 8), a1);
            }
            float sum = Vector256.Sum(a0 + a1);
            for (; i < hd; i++) sum += qh[i] * key[i];
            p[h * stride] = sum + bias;
        }
    }

    /// <summary>acc_h += Σ_c p[h][at_c] · row_c over a block of up to four value rows, every head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // optimized from the first call: the calibration times it then
    static void AddValues(float* acc, int heads, int hd, float* p, int stride, float** rows, int* at, int count)
    {
        for (int h = 0; h < heads; h++)
        {
            float* ah = acc + h * hd, ph = p + h * stride;
            if (count == 4)
            {
                var p0 = Vector256.Create(ph[at[0]]); var p1 = Vector256.Create(ph[at[1]]);
                var p2 = Vector256.Create(ph[at[2]]); var p3 = Vector256.Create(ph[at[3]]);
                float* r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3];
                int i = 0;
                for (; i + 8 <= hd; i += 8)
                {
                    var a = Vector256.FusedMultiplyAdd(p0, Vector256.Load(r0 + i), Vector256.Load(ah + i));
                    a = Vector256.FusedMultiplyAdd(p1, Vector256.Load(r1 + i), a);
                    a = Vector256.FusedMultiplyAdd(p2, Vector256.Load(r2 + i), a);
                    Vector256.FusedMultiplyAdd(p3, Vector256.Load(r3 + i), a).Store(ah + i);
                }
                for (; i < hd; i++) ah[i] += ph[at[0]] * r0[i] + ph[at[1]] * r1[i] + ph[at[2]] * r2[i] + ph[at[3]] * r3[i];
                continue;
            }
            for (int c = 0; c < count; c++)
            {
                float* row = rows[c];
                var pc = Vector256.Create(ph[at[c]]);
                int i = 0;
                for (; i + 8 <= hd; i += 8) Vector256.FusedMultiplyAdd(pc, Vector256.Load(row + i), Vector256.Load(ah + i)).Store(ah + i);
                for (; i < hd; i++) ah[i] += ph[at[c]] * row[i];
            }
        }
    }

    /// <summary>
    /// In place over n scores (−∞ for hidden keys): exp(s − max), returning their sum (0 when
    /// every key is hidden) and the max; the division is left to whoever merges the ranges.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // optimized from the first call: the calibration times it then
    static float Exponentiate(float* x, int n, out float max)
    {
        max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) if (x[i] > max) max = x[i];
        float sum = 0;
        for (int i = 0; i < n; i++) { float e = x[i] == float.NegativeInfinity ? 0f : MathF.Exp(x[i] - max); x[i] = e; sum += e; }
        return sum;
    }
}
