using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>The embedding table (also the tied output head).</summary>
public sealed class Embedding : nn.Module
{
    readonly Parameter weight; // [V, D]

    public Embedding(long vocab, long dim, ScalarType dtype, Device device) : base(nameof(Embedding))
    {
        weight = Param.Empty([vocab, dim], dtype, device);
        RegisterComponents();
    }

    public Tensor Weight => weight;

    /// <summary>Rows of the table for flat token ids [N] → [N, D].</summary>
    public Tensor Lookup(Tensor tokens) => weight.index_select(0, tokens);
}

/// <summary>The decoder stack, named as Hugging Face's <c>model.*</c> tensors.</summary>
public sealed class GriffinModel : nn.Module
{
    readonly Embedding embed_tokens;
    readonly ModuleList<ResidualBlock> layers;
    readonly RmsNorm final_norm;

    public GriffinModel(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(GriffinModel))
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<ResidualBlock>();
        for (int i = 0; i < c.NumHiddenLayers; i++) layers.Add(new ResidualBlock(c, c.KindOf(i), dtype, device));
        final_norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    public Embedding EmbedTokens => embed_tokens;
    public IList<ResidualBlock> Layers => layers;
    public RmsNorm FinalNorm => final_norm;
}
