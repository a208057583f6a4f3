using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The MLP's gate for the few rows of a small CPU decode step: gelu_tanh(gate) ⊙ up from the fused
/// [.., 2M] projection output, in one vector pass instead of libtorch's in-place GELU over a
/// strided half, a second view and a product (31–34 µs per 2B layer at batch 1 against 25–37 µs
/// this way, measured inside the model: the saving is mostly ops, docs/benchmarks.md, issue #9).
/// In bf16 it rounds where the two tensor ops round: after the GELU and after the product.
/// Used where the small-batch kernels are in use, like <see cref="RmsNormRows"/>.
/// </summary>
internal static unsafe class GeluGateRows
{
    const int PartElements = 2048;

    public static bool Applies(Tensor both) =>
        StepFusion.Takes(both) && both.size(-1) % 2 == 0 && (both.numel() / both.size(-1) <= SimdGemv.MaxRows || BatchInvariance.Covers(both.numel() / both.size(-1)));

    /// <param name="both">[.., 2M]: the gate projection's M outputs, then the up projection's.</param>
    /// <returns>[.., M] in <paramref name="both"/>'s dtype.</returns>
    public static Tensor Forward(Tensor both)
    {
        long m = both.size(-1) / 2, rows = both.numel() / (2 * m);
        var shape = both.shape;   // a fresh array on every call: ours to change
        shape[^1] = m;
        var output = empty(shape, both.dtype, both.device);
        bool bf16 = both.dtype == ScalarType.BFloat16;
        long size = bf16 ? 2 : 4;
        byte* src = (byte*)SimdGemv.Data(both), dst = (byte*)SimdGemv.Data(output);
        int partsPerRow = (int)((m + PartElements - 1) / PartElements);

        void Part(int p)
        {
            long r = p / partsPerRow, from = p % partsPerRow * (long)PartElements, to = Math.Min(m, from + PartElements);
            byte* gate = src + r * 2 * m * size, up = gate + m * size, o = dst + r * m * size;
            long i = from;
            for (; i + 8 <= to; i += 8)
            {
                var g = VectorMath.Gelu(VectorMath.Load(gate, i, bf16));
                if (bf16) g = VectorMath.RoundBf16(g);
                var y = g * VectorMath.Load(up, i, bf16);
                VectorMath.Store(bf16 ? VectorMath.RoundBf16(y) : y, o, i, bf16);
            }
            for (; i < to; i++)
            {
                float g = VectorMath.Gelu(VectorMath.Read(gate, i, bf16));
                float y = (bf16 ? VectorMath.RoundBf16(g) : g) * VectorMath.Read(up, i, bf16);
                if (bf16) ((ushort*)o)[i] = GemvKernels.ToBf16(y);
                else ((float*)o)[i] = y;
            }
        }
        KernelWorkers.Run((int)rows * partsPerRow, Part);
        StepFusion.Count();
        return output;
    }
}
