using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// One RG-LRU decode step of 1–8 sequences on the CPU as a single fused pass per block: the
/// block's gate product through <see cref="GemvKernels"/>, then both sigmoids, a = exp(log a),
/// μ = √(1 − a²) and h = a·h₀ + v·i·μ element by element (the equations of <see cref="RgLru"/>).
/// Through libtorch the same step is ~15 small ops on one thread plus a float32 block-diagonal
/// matmul, 0.5–0.9 ms per 2B layer in the model (docs/benchmarks.md, issue #9), where the gate
/// weights alone stream in well under 0.2 ms. Taken where the small-batch projections are
/// (<see cref="SimdGemv.Takes"/>), so the same timing decides both; everything else (prefill
/// chunks, larger batches, new documents, other devices) keeps the tensor path. With several
/// rows each block's gates (512 KiB in float32 for 2B) are read from memory once and stay in
/// cache for the other rows.
/// </summary>
internal static unsafe class RgLruStep
{
    /// <summary>A one-token step of up to 8 rows with no document boundary, on contiguous CPU tensors.</summary>
    public static bool Applies(Tensor v, Tensor h0, ForwardBatch batch, Tensor gates) =>
        batch.B <= SimdGemv.MaxRows && batch.T == 1 && batch.GateKeep is null
        && v.device_type == DeviceType.CPU && v.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && v.is_contiguous() && h0.is_contiguous() && h0.dtype == ScalarType.Float32
        && SimdGemv.Takes(ScalarType.Float32, gates.numel(), 1);

    /// <param name="v">the conv output, [B, L] elements in the model dtype.</param>
    /// <param name="h0">[B, 1, H, bw] float32 state before the step.</param>
    /// <param name="gates">[H, 2bw, bw] float32: rows 0..bw−1 the input gate, bw..2bw−1 the recurrence gate.</param>
    /// <param name="gateBias">[H, 2bw] float32.</param>
    /// <param name="negScale">[H, bw] float32: −8·softplus(λ).</param>
    /// <returns>h after the step, a new [B, 1, H, bw] float32 tensor (also the step's output).</returns>
    public static Tensor Forward(Tensor v, Tensor h0, Tensor gates, Tensor gateBias, Tensor negScale)
    {
        int blocks = (int)gates.shape[0], bw = (int)gates.shape[2];
        var h = empty_like(h0);
        float* hp = (float*)SimdGemv.Data(h), h0p = (float*)SimdGemv.Data(h0);
        float* gp = (float*)SimdGemv.Data(gates), bp = (float*)SimdGemv.Data(gateBias);
        float* sp = (float*)SimdGemv.Data(negScale);
        void* vp = SimdGemv.Data(v);
        bool bf16 = v.dtype == ScalarType.BFloat16;

        long l = (long)blocks * bw, rows = v.numel() / l;

        void Block(int blk)
        {
            float* x = stackalloc float[bw];
            float* g = stackalloc float[2 * bw];
            float* gates = gp + (long)blk * 2 * bw * bw;
            float* bias = bp + 2L * blk * bw;
            long at = (long)blk * bw;
            for (long r = 0; r < rows; r++)
            {
                long row = r * l + at;
                for (int i = 0; i < bw; i++) x[i] = bf16 ? GemvKernels.ToFloat(((ushort*)vp)[row + i]) : ((float*)vp)[row + i];
                GemvKernels.F32(gates, bw, x, g, 0, 2 * bw);
                for (int i = 0; i < bw; i++)
                {
                    float gateX = Sigmoid(g[i] + bias[i]);
                    float logA = Sigmoid(g[bw + i] + bias[bw + i]) * sp[at + i];
                    float a = MathF.Exp(logA);
                    float mu = MathF.Sqrt(1f - MathF.Exp(2f * logA));
                    hp[row + i] = x[i] * gateX * mu + a * h0p[row + i];   // the tensor path's order: (v·i)·μ, then + a·h₀
                }
            }
        }
        KernelWorkers.Run(blocks, Block);   // one part per block, claimed by whichever core is free
        return h;
    }

    static float Sigmoid(float z) => 1f / (1f + MathF.Exp(-z));
}
