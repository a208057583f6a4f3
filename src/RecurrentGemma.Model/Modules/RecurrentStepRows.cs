using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The middle of a <see cref="RecurrentBlock"/> for a decode step of 1–8 sequences on the CPU, as
/// one pass per block of channels: the causal conv over the slot's history (shifted in place in
/// the state pool), the block's RG-LRU gate product through <see cref="GemvKernels"/>, both
/// sigmoids, a, μ and h = a·h₀ + v·i·μ (written in place into the pool), then gelu(y)·h — the
/// equations of <see cref="CausalConv1D"/>, <see cref="RgLru"/> and <see cref="RecurrentBlock"/>,
/// rounded where their tensor ops round (in bf16 after every conv multiply-add, after the GELU and
/// after the product with h). Through libtorch the same part of a 2B layer was ~20 small ops (state
/// gathers and scatters, the conv's shifted multiply-adds, GELU, the gated product) around a fused
/// RG-LRU pass: ~0.31 ms per 2B bf16 layer at batch 1 against 0.15 ms this way (docs/benchmarks.md, issue #9).
/// Each block's gate weights (only a block's own channels feed its gates) are read once for all
/// rows; a bf16 model keeps them in bf16, half the bytes of the float32 copy the tensor path uses,
/// and equal to it (bf16 → float32 is exact). Taken where the small-batch kernels take the
/// gates' product (<see cref="SimdGemv.Takes"/>); prefill chunks, larger batches, new documents,
/// traced passes and other devices keep the tensor path.
/// </summary>
internal static unsafe class RecurrentStepRows
{
    /// <summary>A one-token step of up to 8 rows with no document boundary and no trace, where the kernels take the gates' product.</summary>
    public static bool Applies(Tensor yx, ForwardBatch batch, Tensor gates) =>
        batch.T == 1 && (batch.B <= SimdGemv.MaxRows || BatchInvariance.Covers(batch.B)) && batch.GateKeep is null && batch.Trace is null
        && StepFusion.Takes(yx) && SimdGemv.Takes(gates.dtype, gates.numel(), batch.B);

    /// <param name="yx">[B, 1, 2L]: linear_y's outputs, then linear_x's, in the model dtype.</param>
    /// <param name="taps">[K, L] the conv's taps, model dtype; <paramref name="convBias"/> [L].</param>
    /// <param name="convPool">[N, K−1, L] every slot's last K−1 conv inputs, model dtype (updated in place).</param>
    /// <param name="rnnPool">[N, L] every slot's float32 h (updated in place).</param>
    /// <param name="slots">the slot of each row.</param>
    /// <param name="gates">[H, 2bw, bw] float32 or bf16: rows 0..bw−1 the input gate, bw..2bw−1 the recurrence gate.</param>
    /// <param name="gateBias">[H, 2bw] float32; <paramref name="negScale"/> [H, bw] float32, −8·softplus(λ).</param>
    /// <returns>[B, 1, L] gelu(y)·h in the model dtype, linear_out's input.</returns>
    public static Tensor Forward(Tensor yx, Tensor taps, Tensor convBias, Tensor convPool, Tensor rnnPool, long[] slots,
        Tensor gates, Tensor gateBias, Tensor negScale)
    {
        int blocks = (int)gates.size(0), bw = (int)gates.size(2), k = (int)taps.size(0), rows = slots.Length;
        long l = (long)blocks * bw;
        bool bf16 = yx.dtype == ScalarType.BFloat16, gates16 = gates.dtype == ScalarType.BFloat16;
        var output = empty([rows, 1, l], yx.dtype, yx.device);
        byte* yxp = (byte*)SimdGemv.Data(yx), outp = (byte*)SimdGemv.Data(output);
        byte* tapp = (byte*)SimdGemv.Data(taps), cbp = (byte*)SimdGemv.Data(convBias), convp = (byte*)SimdGemv.Data(convPool);
        float* rnnp = (float*)SimdGemv.Data(rnnPool), bp = (float*)SimdGemv.Data(gateBias), sp = (float*)SimdGemv.Data(negScale);
        void* gp = SimdGemv.Data(gates);
        long size = bf16 ? 2 : 4, history = (long)(k - 1) * l;

        float Read(byte* p, long i) => VectorMath.Read(p, i, bf16);
        float Round(float f) => bf16 ? VectorMath.RoundBf16(f) : f;
        Vector256<float> RoundV(Vector256<float> f) => bf16 ? VectorMath.RoundBf16(f) : f;

        void Block(int blk)
        {
            float* x = stackalloc float[bw];
            float* g = stackalloc float[2 * bw];
            float* xEven = stackalloc float[gates16 ? bw / 2 : 0];
            float* xOdd = stackalloc float[gates16 ? bw / 2 : 0];
            long at = (long)blk * bw;
            float* bias = bp + 2L * blk * bw, scale = sp + at;
            int vectorEnd = bw - bw % 8;
            for (int r = 0; r < rows; r++)
            {
                byte* row = yxp + r * 2 * l * size;                 // y: [0, L), u: [L, 2L)
                byte* hist = convp + slots[r] * history * size;     // [K−1, L], oldest first
                float* h = rnnp + slots[r] * l + at;
                byte* output = outp + r * l * size;

                // The conv: v = u·c_{K−1}, then + window_j·c_j over the history, then + bias, each
                // rounded as the tensor path rounds; the history then shifts by one input.
                for (int c = 0; c < vectorEnd; c += 8)
                {
                    long ch = at + c;
                    var v = RoundV(VectorMath.Load(row, l + ch, bf16) * VectorMath.Load(tapp, (k - 1) * l + ch, bf16));
                    for (int j = 0; j < k - 1; j++)
                        v = RoundV(v + VectorMath.Load(hist, j * l + ch, bf16) * VectorMath.Load(tapp, j * l + ch, bf16));
                    RoundV(v + VectorMath.Load(cbp, ch, bf16)).Store(x + c);
                }
                for (int c = vectorEnd; c < bw; c++)
                {
                    long ch = at + c;
                    float v = Round(Read(row, l + ch) * Read(tapp, (k - 1) * l + ch));
                    for (int j = 0; j < k - 1; j++) v = Round(v + Read(hist, j * l + ch) * Read(tapp, j * l + ch));
                    x[c] = Round(v + Read(cbp, ch));
                }
                if (k > 1)
                {
                    for (int j = 0; j < k - 2; j++) Buffer.MemoryCopy(hist + ((j + 1) * l + at) * size, hist + (j * l + at) * size, bw * size, bw * size);
                    Buffer.MemoryCopy(row + (l + at) * size, hist + ((k - 2) * l + at) * size, bw * size, bw * size);
                }

                if (gates16)
                {
                    for (int i = 0; i < bw / 2; i++) { xEven[i] = x[2 * i]; xOdd[i] = x[2 * i + 1]; }
                    GemvKernels.Bf16((ushort*)gp + (long)blk * 2 * bw * bw, bw, xEven, xOdd, g, 0, 2 * bw);
                }
                else GemvKernels.F32((float*)gp + (long)blk * 2 * bw * bw, bw, x, g, 0, 2 * bw);

                // The gates and the recurrence (h in place), then gelu(y) rounded to the model
                // dtype, times h, rounded once more.
                for (int c = 0; c < vectorEnd; c += 8)
                {
                    var gateX = VectorMath.Sigmoid(Vector256.Load(g + c) + Vector256.Load(bias + c));
                    var logA = VectorMath.Sigmoid(Vector256.Load(g + bw + c) + Vector256.Load(bias + bw + c)) * Vector256.Load(scale + c);
                    var mu = Vector256.Sqrt(Vector256<float>.One - Vector256.Exp(logA + logA));
                    var hNew = Vector256.Load(x + c) * gateX * mu + Vector256.Exp(logA) * Vector256.Load(h + c);
                    hNew.Store(h + c);
                    var gelu = RoundV(VectorMath.Gelu(VectorMath.Load(row, at + c, bf16)));
                    VectorMath.Store(RoundV(gelu * hNew), output, at + c, bf16);
                }
                for (int c = vectorEnd; c < bw; c++)
                {
                    float gateX = VectorMath.Sigmoid(g[c] + bias[c]);
                    float logA = VectorMath.Sigmoid(g[bw + c] + bias[bw + c]) * scale[c];
                    h[c] = x[c] * gateX * MathF.Sqrt(1f - MathF.Exp(logA + logA)) + MathF.Exp(logA) * h[c];
                    float gelu = Round(VectorMath.Gelu(Read(row, at + c)));
                    if (bf16) ((ushort*)output)[at + c] = GemvKernels.ToBf16(gelu * h[c]);
                    else ((float*)output)[at + c] = gelu * h[c];
                }
            }
        }
        KernelWorkers.Run(blocks, Block);   // one part per block, claimed by whichever core is free
        StepFusion.Count();
        return output;
    }
}
