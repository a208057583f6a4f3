using TorchSharp;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The RG-LRU over a prefill chunk on the CPU as one fused pass: given the block-diagonal gate
/// products (one batched matmul, done by the caller through libtorch), each (row, block) walks its
/// T tokens in order, eight channels at a time, computing both sigmoids, a = exp(log a),
/// μ = √(1 − a²), the document/padding factors and h = a·h + v·i·μ in registers, and writes h_t
/// once. Through whole-tensor ops the same work is ~8 element-wise passes plus either T small
/// steps or the parallel scan's log₂T rounds over [B, T, L] float32 (O(T log T) memory traffic):
/// for a 2B layer and a 512-token chunk the scan alone took ~36 ms and the sequential loop ~15 ms
/// where this pass takes a few (docs/benchmarks.md, issue #9). A GPU keeps the parallel scan,
/// which is what needs few launches there.
/// </summary>
internal static unsafe class RgLruScan
{
    /// <summary>CPU float32 tensors laid out as the kernel reads them (g is made contiguous by the caller).</summary>
    public static bool Applies(Tensor v32, Tensor h0) =>
        CpuPaths.On(v32) && v32.dtype == ScalarType.Float32 && v32.is_contiguous()
        && h0.dtype == ScalarType.Float32 && h0.is_contiguous();

    /// <param name="g">[B, T, H, 2bw] float32 gate products before their bias (input gate, then recurrence gate).</param>
    /// <param name="v32">[B, T, H, bw] float32 conv outputs.</param>
    /// <param name="h0">[B, 1, H, bw] float32 state before the chunk.</param>
    /// <param name="gateBias">[H, 2bw] float32.</param>
    /// <param name="negScale">[H, bw] float32: −8·softplus(λ).</param>
    /// <param name="keep">[B, T, 1, 1] float32 factors (null: none), with <paramref name="pad"/> and
    /// <paramref name="reset"/>: ã = a·keep + pad and μ̃ = μ·keep + reset, as in <see cref="RgLru"/>.</param>
    /// <param name="hLast">[B, 1, H, bw] float32: h after each row's last token (padding carries it).</param>
    /// <returns>[B, T, H, bw] float32: h_t for every token.</returns>
    public static Tensor Forward(Tensor g, Tensor v32, Tensor h0, Tensor gateBias, Tensor negScale,
        Tensor? keep, Tensor? pad, Tensor? reset, out Tensor hLast)
    {
        int rows = (int)v32.size(0), t = (int)v32.size(1), blocks = (int)v32.size(2), bw = (int)v32.size(3);
        var o = empty_like(v32);
        var hl = h0.clone();
        float* gp = (float*)SimdGemv.Data(g), vp = (float*)SimdGemv.Data(v32), op = (float*)SimdGemv.Data(o);
        float* hp = (float*)SimdGemv.Data(hl), bp = (float*)SimdGemv.Data(gateBias), sp = (float*)SimdGemv.Data(negScale);
        float* kp = keep is null ? null : (float*)SimdGemv.Data(keep);
        float* pp = pad is null ? null : (float*)SimdGemv.Data(pad);
        float* rp = reset is null ? null : (float*)SimdGemv.Data(reset);
        long l = (long)blocks * bw;
        bool factors = kp is not null;

        void Part(int part)
        {
            int b = part / blocks, blk = part % blocks;
            float* h = hp + ((long)b * blocks + blk) * bw;
            float* biasIn = bp + 2L * blk * bw, biasRec = biasIn + bw, scale = sp + (long)blk * bw;
            for (int s = 0; s < t; s++)
            {
                long bt = (long)b * t + s;
                float* gIn = gp + (bt * blocks + blk) * 2 * bw, gRec = gIn + bw;
                long at = bt * l + (long)blk * bw;
                float* v = vp + at, outp = op + at;
                float k = factors ? kp[bt] : 1f, pd = factors ? pp[bt] : 0f, rs = factors ? rp[bt] : 0f;
                var kv = Vector256.Create(k); var pv = Vector256.Create(pd); var rv = Vector256.Create(rs);
                int i = 0;
                for (; i + 8 <= bw; i += 8)
                {
                    var gateX = Sigmoid(Vector256.Load(gIn + i) + Vector256.Load(biasIn + i));
                    var logA = Sigmoid(Vector256.Load(gRec + i) + Vector256.Load(biasRec + i)) * Vector256.Load(scale + i);
                    var a = Vector256.Exp(logA);
                    var mu = Vector256.Sqrt(Vector256<float>.One - Vector256.Exp(logA + logA));
                    if (factors) { a = a * kv + pv; mu = mu * kv + rv; }
                    var next = Vector256.Load(v + i) * gateX * mu + a * Vector256.Load(h + i);
                    next.Store(h + i);
                    next.Store(outp + i);
                }
                for (; i < bw; i++)
                {
                    float gateX = 1f / (1f + MathF.Exp(-(gIn[i] + biasIn[i])));
                    float logA = scale[i] / (1f + MathF.Exp(-(gRec[i] + biasRec[i])));
                    float a = MathF.Exp(logA), mu = MathF.Sqrt(1f - MathF.Exp(2f * logA));
                    if (factors) { a = a * k + pd; mu = mu * k + rs; }
                    float next = v[i] * gateX * mu + a * h[i];
                    h[i] = next;
                    outp[i] = next;
                }
            }
        }
        KernelWorkers.Run(rows * blocks, Part);   // parts are independent: each owns its channels of one row
        hLast = hl;
        return o;
    }

    static Vector256<float> Sigmoid(Vector256<float> z) =>
        Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-z));
}
