using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// <see cref="RmsNorm"/> for the few rows of a small decode step on the CPU, in one pass per row
/// instead of nine libtorch ops (up-cast, norm, square, divide, add, rsqrt, two products,
/// down-cast): a 2B step normalises 53 times, and those ops cost 70–110 µs per norm there on
/// one thread against a few µs for the loop (docs/benchmarks.md, issue #9). The sum of squares
/// is accumulated in double; the result is x·r·(1 + w) in float32, rounded once to bf16 for a
/// bf16 model, as the tensor path rounds. Used where the small-batch kernels are in use.
/// </summary>
internal static unsafe class RmsNormRows
{
    public static bool Applies(Tensor x, Tensor gain) =>
        CpuPaths.On(x) && x.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && x.is_contiguous() && gain.is_contiguous() && gain.dtype == ScalarType.Float32
        && (x.numel() / x.size(-1) <= SimdGemv.MaxRows || BatchInvariance.Covers(x.numel() / x.size(-1)))
        && SimdGemv.Enabled && SimdGemv.Supported;

    public static Tensor Forward(Tensor x, Tensor gain, double eps)
    {
        long d = x.size(-1), rows = x.numel() / d;
        var y = empty_like(x);
        float* g = (float*)SimdGemv.Data(gain);
        bool bf16 = x.dtype == ScalarType.BFloat16;
        void* xp = SimdGemv.Data(x), yp = SimdGemv.Data(y);
        for (long r = 0; r < rows; r++)
        {
            double squares = 0;
            for (long i = 0; i < d; i++)
            {
                float v = Read(xp, bf16, r * d + i);
                squares += v * v;
            }
            float scale = (float)(1.0 / Math.Sqrt(squares / d + eps));
            for (long i = 0; i < d; i++)
            {
                float v = Read(xp, bf16, r * d + i) * scale * g[i];
                if (bf16) ((ushort*)yp)[r * d + i] = GemvKernels.ToBf16(v);
                else ((float*)yp)[r * d + i] = v;
            }
        }
        return y;
    }

    static float Read(void* p, bool bf16, long i) => bf16 ? GemvKernels.ToFloat(((ushort*)p)[i]) : ((float*)p)[i];
}
