using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>GeGLU feed-forward: (gelu_tanh(m·W_gateᵀ + b) ⊙ (m·W_upᵀ + b))·W_downᵀ + b.</summary>
public sealed class MlpBlock : nn.Module
{
    readonly Linear gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;

    public MlpBlock(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(MlpBlock))
    {
        gate_proj = new Linear(c.HiddenSize, c.MlpWidth, true, dtype, device);
        up_proj = new Linear(c.HiddenSize, c.MlpWidth, true, dtype, device);
        down_proj = new Linear(c.MlpWidth, c.HiddenSize, true, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor m)
    {
        using var scope = NewDisposeScope();
        // The tanh approximation is part of the model: exact-erf GELU moves logits by ~0.01.
        var gated = gate_proj.Forward(m).gelu(TorchSharp.Modules.GELU.Approximate.tanh) * up_proj.Forward(m);
        return down_proj.Forward(gated).MoveToOuterDisposeScope();
    }
}
