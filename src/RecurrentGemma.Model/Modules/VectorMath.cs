using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The element-wise functions of the CPU step kernels on eight float32 lanes, each built on the
/// runtime's vector exp (within ~2 ulp of exp over float32's range, measured), and the same
/// formulas on one float for the tails, so a lane and a tail element agree.
/// tanh is written as 1 − 2/(e^{2z} + 1): exact limits ±1 (e^{2z} overflows to ∞ or underflows
/// to 0) and an absolute error of about 1e-7, which is what a soft cap or a GELU adds it to.
/// </summary>
internal static class VectorMath
{
    /// <summary>√(2/π), GELU's tanh-approximation scale.</summary>
    const float GeluBeta = 0.7978845608028654f;
    const float GeluKappa = 0.044715f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Sigmoid(Vector256<float> z) =>
        Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-z));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Tanh(Vector256<float> z) =>
        Vector256<float>.One - Vector256.Create(2f) / (Vector256.Exp(z + z) + Vector256<float>.One);

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the model's GELU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Gelu(Vector256<float> x)
    {
        var inner = Vector256.Create(GeluBeta) * (x + Vector256.Create(GeluKappa) * x * x * x);
        return Vector256.Create(0.5f) * x * (Vector256<float>.One + Tanh(inner));
    }

    public static float Sigmoid(float z) => 1f / (1f + MathF.Exp(-z));

    public static float Tanh(float z) => 1f - 2f / (MathF.Exp(z + z) + 1f);

    public static float Gelu(float x) => 0.5f * x * (1f + Tanh(GeluBeta * (x + GeluKappa * x * x * x)));

    /// <summary>Eight bf16 values (raw 16-bit patterns) as float32: exact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> LoadBf16(ushort* p) =>
        (Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()) << 16).AsSingle();

    /// <summary>One float32 or bf16 value of a tensor's storage, as float32 (the tails' <see cref="Load"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Read(byte* p, long i, bool bf16) => bf16 ? GemvKernels.ToFloat(((ushort*)p)[i]) : ((float*)p)[i];

    /// <summary>One float rounded to bf16 and widened back (the tails' <see cref="RoundBf16(Vector256{float})"/>).</summary>
    public static float RoundBf16(float f) => GemvKernels.ToFloat(GemvKernels.ToBf16(f));

    /// <summary>Eight float32 or bf16 values of a tensor's storage, as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<float> Load(byte* p, long i, bool bf16) =>
        bf16 ? LoadBf16((ushort*)p + i) : Vector256.Load((float*)p + i);

    /// <summary>
    /// Each lane rounded to bf16 (round to nearest even, as <see cref="GemvKernels.ToBf16"/> and
    /// libtorch round; a NaN stays a NaN) and widened back: what a bf16 tensor op stores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> RoundBf16(Vector256<float> f)
    {
        var u = f.AsUInt32();
        var rounded = (u + Vector256.Create(0x7FFFu) + ((u >> 16) & Vector256<uint>.One)) & Vector256.Create(0xFFFF0000u);
        var nan = ~Vector256.Equals(f, f).AsUInt32();
        return Vector256.ConditionalSelect(nan, (u | Vector256.Create(0x00400000u)) & Vector256.Create(0xFFFF0000u), rounded).AsSingle();
    }

    /// <summary>Stores eight lanes already rounded by <see cref="RoundBf16"/> as bf16, or as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Store(Vector256<float> v, byte* p, long i, bool bf16)
    {
        if (!bf16) { v.Store((float*)p + i); return; }
        var high = v.AsUInt32() >> 16;
        Vector128.Narrow(high.GetLower(), high.GetUpper()).Store((ushort*)p + i);
    }
}
