namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The switch and the count of the fused CPU passes of a small decode step that replace runs of
/// libtorch element-wise ops (<see cref="RecurrentStepRows"/>, <see cref="GeluGateRows"/>,
/// <see cref="SoftCap"/>): tests run the same step both ways and check the passes ran, benchmarks
/// time one against the other. The server leaves it on.
/// </summary>
public static class StepFusion
{
    static long _passes;

    /// <summary>Off: every step takes the tensor path.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Fused passes run so far in this process.</summary>
    public static long Passes => Interlocked.Read(ref _passes);

    internal static void Count() => Interlocked.Increment(ref _passes);

    /// <summary>Whether a fused pass may read <paramref name="t"/>: switched on, vector kernels here, a contiguous float32 or bf16 CPU tensor.</summary>
    internal static bool Takes(TorchSharp.torch.Tensor t) =>
        Enabled && SimdGemv.Enabled && SimdGemv.Supported && CpuPaths.On(t)
        && t.dtype is TorchSharp.torch.ScalarType.Float32 or TorchSharp.torch.ScalarType.BFloat16 && t.is_contiguous();
}
