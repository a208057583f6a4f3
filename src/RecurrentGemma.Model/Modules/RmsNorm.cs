using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Gemma's RMSNorm: x / sqrt(mean(x²) + ε) ⊙ (1 + w). The weight is stored centred on zero, so
/// the gain is 1 + w. Computed in float32 and cast back, so bf16 activations lose nothing here.
/// </summary>
public sealed class RmsNorm : nn.Module
{
    readonly Parameter weight;
    readonly double _eps;

    public RmsNorm(long dim, double eps, ScalarType dtype, Device device) : base(nameof(RmsNorm))
    {
        weight = Param.Empty([dim], dtype, device);
        _eps = eps;
        RegisterComponents();
    }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * rsqrt(x32.pow(2).mean([-1L], keepdim: true) + _eps);
        var y = (normed * (weight.to(ScalarType.Float32) + 1.0)).to(x.dtype);
        return y.MoveToOuterDisposeScope();
    }
}
