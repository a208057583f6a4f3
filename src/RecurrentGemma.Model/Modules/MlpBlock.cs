using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// GeGLU feed-forward: (gelu_tanh(m·W_gateᵀ + b) ⊙ (m·W_upᵀ + b))·W_downᵀ + b.
/// gate_proj and up_proj read the same input, so their weights live in one [2M, D] tensor
/// (<see cref="FusedLinear"/>; the checkpoint names stay) and one matmul computes both. A small
/// CPU decode step applies the gate in one pass (<see cref="GeluGateRows"/>).
/// </summary>
public sealed class MlpBlock : nn.Module
{
    readonly Linear gate_proj;
    readonly Linear up_proj;
    readonly Linear down_proj;
    readonly FusedLinear _gateUp;
    readonly long _width;

    public MlpBlock(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(MlpBlock))
    {
        _width = c.MlpWidth;
        _gateUp = new FusedLinear(c.HiddenSize, [c.MlpWidth, c.MlpWidth], true, dtype, device);
        gate_proj = _gateUp.Part(0);
        up_proj = _gateUp.Part(1);
        down_proj = new Linear(c.MlpWidth, c.HiddenSize, true, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor m) => Output.Apply(Mix(Input.Apply(m)));

    internal Projection Input => _gateUp.AsProjection;                    // [B, T, 2M]: gate and up

    internal Projection Output => down_proj.AsProjection;

    /// <summary>The gate between the projections: [B, T, 2M] → [B, T, M].</summary>
    internal Tensor Mix(Tensor both)
    {
        // The tanh approximation is part of the model: exact-erf GELU moves logits by ~0.01.
        if (GeluGateRows.Applies(both)) return GeluGateRows.Forward(both);   // a small CPU step: one pass
        var gated = both.narrow(-1, 0, _width).gelu_(TorchSharp.Modules.GELU.Approximate.tanh);
        return gated.mul_(both.narrow(-1, _width, _width));   // in place: [B, T, M] views of one tensor
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _gateUp.Dispose();
        base.Dispose(disposing);
    }
}
