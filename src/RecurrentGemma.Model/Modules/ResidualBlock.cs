using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// One layer: r = x + temporal_block(temporal_pre_norm(x)); x' = r + mlp_block(channel_pre_norm(r)).
/// </summary>
public sealed class ResidualBlock : nn.Module
{
    readonly RmsNorm temporal_pre_norm;
    readonly TemporalBlock temporal_block;
    readonly RmsNorm channel_pre_norm;
    readonly MlpBlock mlp_block;

    public BlockKind Kind { get; }

    public ResidualBlock(GriffinConfig c, BlockKind kind, ScalarType dtype, Device device) : base(nameof(ResidualBlock))
    {
        Kind = kind;
        temporal_pre_norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        temporal_block = kind == BlockKind.Recurrent
            ? new RecurrentBlock(c, dtype, device)
            : new LocalAttentionBlock(c, dtype, device);
        channel_pre_norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp_block = new MlpBlock(c, dtype, device);
        RegisterComponents();
    }

    internal Tensor Forward(Tensor x, ForwardBatch batch, int layer)
    {
        var trace = batch.Trace;
        var h = temporal_pre_norm.Forward(x);
        trace?.Invoke($"layer{layer}.temporal_pre_norm.out", h);
        var mixed = temporal_block.Forward(h, batch, layer);
        trace?.Invoke($"layer{layer}.temporal_block.out", mixed);
        // The residual stream is updated in place (one tensor through all layers), except when
        // an observer may still hold the previous layer's output.
        var r = trace is null ? x.add_(mixed, Scalars.One) : x.add(mixed, Scalars.One);
        var m = channel_pre_norm.Forward(r);
        trace?.Invoke($"layer{layer}.channel_pre_norm.out", m);
        var mlp = mlp_block.Forward(m);
        trace?.Invoke($"layer{layer}.mlp.out", mlp);
        return trace is null ? r.add_(mlp, Scalars.One) : r.add(mlp, Scalars.One);
    }

    internal void Prepare()
    {
        temporal_pre_norm.Prepare();
        channel_pre_norm.Prepare();
        temporal_block.Prepare();
    }
}
