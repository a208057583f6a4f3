using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>The token-mixing half of a residual block: recurrent or local attention.</summary>
public abstract class TemporalBlock : nn.Module
{
    protected TemporalBlock(string name) : base(name) { }

    /// <summary>Derives per-call constants from the loaded weights.</summary>
    internal abstract void Prepare();

    /// <summary>h: [B, T, D] → [B, T, D]; reads and updates this layer's slots in the batch's state.</summary>
    internal abstract Tensor Forward(Tensor h, ForwardBatch batch, int layer);
}
