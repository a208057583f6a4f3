using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The token-mixing half of a residual block: recurrent or local attention. Both are
/// projection → mixing → projection; the mixing is the only part that reads or writes a
/// sequence's state, so a forward may run it per sequence while the projections serve every
/// sequence at once (<see cref="RowExactForward"/>).
/// </summary>
public abstract class TemporalBlock : nn.Module
{
    protected TemporalBlock(string name) : base(name) { }

    /// <summary>Derives per-call constants from the loaded weights.</summary>
    internal abstract void Prepare();

    /// <summary>The projection that reads h (fused where several do).</summary>
    internal abstract Projection Input { get; }

    /// <summary>The projection that writes the block's output.</summary>
    internal abstract Projection Output { get; }

    /// <summary>What lies between the two projections: [B, T, in-projection width] → [B, T, out-projection input];
    /// reads and updates this layer's slots in the batch's state.</summary>
    internal abstract Tensor Mix(Tensor projected, ForwardBatch batch, int layer);

    /// <summary>h: [B, T, D] → [B, T, D].</summary>
    internal Tensor Forward(Tensor h, ForwardBatch batch, int layer) =>
        Output.Apply(Mix(Input.Apply(h), batch, layer));
}
