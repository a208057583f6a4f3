using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The logits' soft cap, c·tanh(z / c), on the CPU in one vector pass over every core that also
/// widens a bf16 head's output to float32: libtorch's up-cast, divide, tanh and multiply over a
/// 256k vocabulary took 0.8–1.0 ms of a 2B batch-1 step (docs/benchmarks.md, issue #9).
/// </summary>
internal static unsafe class SoftCap
{
    const int PartElements = 16384;

    public static bool Applies(Tensor logits) => StepFusion.Takes(logits);

    /// <summary>The head's output as float32 logits, capped when <paramref name="cap"/> &gt; 0: the fused
    /// pass where it applies, libtorch's ops otherwise (<paramref name="logits"/> is the caller's own tensor).</summary>
    public static Tensor Logits(Tensor logits, double cap)
    {
        if (cap > 0 && Applies(logits)) return Apply(logits, cap);
        if (logits.dtype != ScalarType.Float32) logits = logits.to(ScalarType.Float32);
        if (cap > 0) logits.div_(Scalars.Of(cap)).tanh_().mul_(Scalars.Of(cap));
        return logits;
    }

    /// <returns>float32 logits, capped: <paramref name="logits"/> itself when it is float32 (its own tensor), else a new one.</returns>
    public static Tensor Apply(Tensor logits, double cap)
    {
        bool bf16 = logits.dtype == ScalarType.BFloat16;
        var output = bf16 ? empty(logits.shape, ScalarType.Float32, logits.device) : logits;
        byte* src = (byte*)SimdGemv.Data(logits);
        float* dst = (float*)SimdGemv.Data(output);
        long n = logits.numel();
        float c = (float)cap, inverse = 1f / c;
        var vc = Vector256.Create(c);
        var vInverse = Vector256.Create(inverse);

        void Part(int p)
        {
            long i = (long)p * PartElements, to = Math.Min(n, i + PartElements);
            for (; i + 8 <= to; i += 8) (VectorMath.Tanh(VectorMath.Load(src, i, bf16) * vInverse) * vc).Store(dst + i);
            if (i == to) return;
            // The last few through the vector function too: the scalar one can differ in the last
            // bit, and which elements are last depends on how many rows the tensor has
            // (BatchInvariance: a 300-id vocabulary's last 4 logits alone, not beside a second row).
            float* tail = stackalloc float[8];
            for (int j = 0; j < 8; j++) tail[j] = i + j < to ? VectorMath.Read(src, i + j, bf16) : 0f;
            (VectorMath.Tanh(Vector256.Load(tail) * vInverse) * vc).Store(tail);
            for (int j = 0; i + j < to; j++) dst[i + j] = tail[j];
        }
        KernelWorkers.Run((int)((n + PartElements - 1) / PartElements), Part);
        StepFusion.Count();
        return output;
    }
}
