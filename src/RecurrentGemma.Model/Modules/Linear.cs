using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// y = x·Wᵀ + b with the Hugging Face layout W: [out, in]. Unlike nn.Linear it allocates its
/// parameters uninitialised (a checkpoint or <see cref="GriffinForCausalLM.InitializeRandom"/>
/// fills them): initialising 2.7 billion weights only to overwrite them costs seconds.
/// </summary>
public sealed class Linear : nn.Module
{
    readonly Parameter weight;
    readonly Parameter? bias;

    public Linear(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device device) : base(nameof(Linear))
    {
        weight = Param.Empty([outFeatures, inFeatures], dtype, device);
        bias = hasBias ? Param.Empty([outFeatures], dtype, device) : null;
        RegisterComponents();
    }

    /// <summary>
    /// On CPUs without native bf16 arithmetic (no AVX512_BF16 / AMX), bf16 GEMM runs ~7× slower
    /// than f32 (docs/platform-notes: Zen 3), so from <see cref="UpcastRowsOnCpu"/> rows on a bf16
    /// matmul runs as f32 on up-cast copies (one pass over the weight). Where the CPU has bf16
    /// units, native bf16 wins at every batch size (docs/benchmarks.md), so this stays off.
    /// </summary>
    public static bool UpcastBf16OnCpu { get; set; } = !CpuFeatures.HasNativeBf16;
    public const long UpcastRowsOnCpu = 32;

    public Tensor Forward(Tensor x)
    {
        if (UpcastBf16OnCpu && weight.dtype == ScalarType.BFloat16 && weight.device_type == TorchSharp.DeviceType.CPU
            && x.numel() / x.shape[^1] >= UpcastRowsOnCpu)
        {
            using var scope = NewDisposeScope();
            var y = nn.functional.linear(x.to(ScalarType.Float32), weight.to(ScalarType.Float32), bias?.to(ScalarType.Float32));
            return y.to(ScalarType.BFloat16).MoveToOuterDisposeScope();
        }
        return SplitGemv.Applies(x, weight) ? SplitGemv.Linear(x, weight, bias) : nn.functional.linear(x, weight, bias);
    }
}

/// <summary>Parameter construction shared by the modules.</summary>
public static class Param
{
    public static Parameter Empty(long[] shape, ScalarType dtype, Device device) =>
        new(empty(shape, dtype, device), requires_grad: false);
}
