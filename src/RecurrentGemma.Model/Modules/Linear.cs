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

    public Tensor Weight => weight;

    public Tensor Forward(Tensor x) => nn.functional.linear(x, weight, bias);
}

/// <summary>Parameter construction shared by the modules.</summary>
public static class Param
{
    public static Parameter Empty(long[] shape, ScalarType dtype, Device device) =>
        new(empty(shape, dtype, device), requires_grad: false);
}
