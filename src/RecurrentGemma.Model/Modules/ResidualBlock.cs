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

    /// <summary>
    /// The layer over sequences that each keep their own shape ([1, Tᵢ, D], batches[i] of one
    /// row): norms and mixing per sequence, each projection once over all their rows through
    /// <paramref name="project"/>. The residual streams are updated in place.
    /// </summary>
    internal void ForwardRows(Tensor[] xs, ForwardBatch[] batches, int layer, Func<Tensor[], Projection, Tensor[]> project)
    {
        var projected = project(Each(xs, (x, _) => temporal_pre_norm.Forward(x)), temporal_block.Input);
        var mixed = project(Each(projected, (p, i) => temporal_block.Mix(p, batches[i], layer)), temporal_block.Output);
        for (int i = 0; i < xs.Length; i++) xs[i].add_(mixed[i], Scalars.One);
        var both = project(Each(xs, (x, _) => channel_pre_norm.Forward(x)), mlp_block.Input);
        var mlp = project(Each(both, (b, _) => mlp_block.Mix(b)), mlp_block.Output);
        for (int i = 0; i < xs.Length; i++) xs[i].add_(mlp[i], Scalars.One);
    }

    /// <summary>One op per sequence, in order.</summary>
    static Tensor[] Each(Tensor[] xs, Func<Tensor, int, Tensor> op)
    {
        var ys = new Tensor[xs.Length];
        for (int i = 0; i < xs.Length; i++) ys[i] = op(xs[i], i);
        return ys;
    }

    internal void Prepare()
    {
        temporal_pre_norm.Prepare();
        channel_pre_norm.Prepare();
        temporal_block.Prepare();
    }
}
