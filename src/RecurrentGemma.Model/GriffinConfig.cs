using System.Text.Json;

namespace RecurrentGemma.Model;

/// <summary>The kind of temporal-mixing block a residual layer uses.</summary>
public enum BlockKind { Recurrent, Attention }

/// <summary>
/// Hyperparameters of a Griffin / RecurrentGemma model, named as in Hugging Face's
/// <c>RecurrentGemmaConfig</c>. Read one from a checkpoint's config.json with <see cref="FromJson"/>,
/// or take a preset (<see cref="RecurrentGemma2B"/>, <see cref="RecurrentGemma9B"/>).
/// </summary>
public sealed record GriffinConfig
{
    public int VocabSize { get; init; } = 256000;
    public int HiddenSize { get; init; } = 2560;
    /// <summary>Hugging Face convention: twice the MLP width. The MLP uses <see cref="MlpWidth"/>.</summary>
    public int IntermediateSize { get; init; } = 3 * 2560;
    public int NumHiddenLayers { get; init; } = 26;
    public int NumAttentionHeads { get; init; } = 10;
    public int NumKeyValueHeads { get; init; } = 1;
    public int? HeadDimOverride { get; init; }
    public int? LruWidthOverride { get; init; }
    public int AttentionWindowSize { get; init; } = 2048;
    public int Conv1dWidth { get; init; } = 4;
    public double LogitsSoftCap { get; init; } = 30.0;
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000.0;
    public double PartialRotaryFactor { get; init; } = 0.5;
    public IReadOnlyList<BlockKind> BlockTypes { get; init; } = [BlockKind.Recurrent, BlockKind.Recurrent, BlockKind.Attention];
    public bool EmbeddingsScaleBySqrtDim { get; init; } = true;
    public string HiddenActivation { get; init; } = "gelu_pytorch_tanh";
    public int PadTokenId { get; init; }
    public int EosTokenId { get; init; } = 1;
    public int BosTokenId { get; init; } = 2;
    public bool AttentionBias { get; init; }

    public int HeadDim => HeadDimOverride ?? HiddenSize / NumAttentionHeads;
    public int LruWidth => LruWidthOverride ?? HiddenSize;
    public int MlpWidth => IntermediateSize / 2;
    /// <summary>Rotated dimensions per head (the first half of head_dim for factor 0.5).</summary>
    public int RotaryDim => (int)(HeadDim * PartialRotaryFactor);

    public BlockKind KindOf(int layer) => BlockTypes[layer % BlockTypes.Count];
    public int RecurrentLayerCount => Enumerable.Range(0, NumHiddenLayers).Count(l => KindOf(l) == BlockKind.Recurrent);
    public int AttentionLayerCount => NumHiddenLayers - RecurrentLayerCount;

    /// <summary>
    /// The input-embedding multiplier: √D rounded to bfloat16, as the reference does "to match
    /// training" (D = 2560 gives 50.5, not 50.596). 1 when scaling is off.
    /// </summary>
    public float EmbeddingScale => EmbeddingsScaleBySqrtDim ? BFloat16.Round(MathF.Sqrt(HiddenSize)) : 1f;

    public static GriffinConfig RecurrentGemma2B { get; } = new()
    {
        VocabSize = 256000, HiddenSize = 2560, IntermediateSize = 15360, NumHiddenLayers = 26,
        NumAttentionHeads = 10, HeadDimOverride = 256, LruWidthOverride = 2560,
    };

    public static GriffinConfig RecurrentGemma9B { get; } = new()
    {
        VocabSize = 256000, HiddenSize = 4096, IntermediateSize = 24576, NumHiddenLayers = 38,
        NumAttentionHeads = 16, HeadDimOverride = 256, LruWidthOverride = 4096,
    };

    /// <summary>Total parameter count (embedding counted once: the output head is tied).</summary>
    public long ParameterCount
    {
        get
        {
            long d = HiddenSize, l = LruWidth, f = MlpWidth, hd = HeadDim, h = NumAttentionHeads, k = Conv1dWidth;
            long mlp = 2 * (f * d + f) + d * f + d;
            long norms = 2 * d;
            long recurrent = 2 * (l * d + l) + d * l + d + l * k + l + l + 2 * (l * l / h + l);
            long attention = h * hd * d + 2 * hd * d + d * h * hd + d;
            return (long)VocabSize * d + d
                + RecurrentLayerCount * (recurrent + mlp + norms)
                + AttentionLayerCount * (attention + mlp + norms);
        }
    }

    /// <summary>Checks the invariants the implementation relies on; throws naming the field.</summary>
    public GriffinConfig Validate()
    {
        void Require(bool ok, string field, string why) { if (!ok) throw new InvalidDataException($"config.json: {field} {why}"); }
        Require(HiddenSize > 0, "hidden_size", "must be positive");
        Require(VocabSize > 0, "vocab_size", "must be positive");
        Require(NumHiddenLayers > 0, "num_hidden_layers", "must be positive");
        Require(NumAttentionHeads > 0, "num_attention_heads", "must be positive");
        Require(NumKeyValueHeads == 1, "num_key_value_heads", $"is {NumKeyValueHeads}; RecurrentGemma uses multi-query attention (1)");
        Require(LruWidth % NumAttentionHeads == 0, "lru_width", $"({LruWidth}) must be divisible by num_attention_heads ({NumAttentionHeads})");
        Require(IntermediateSize > 0 && IntermediateSize % 2 == 0, "intermediate_size", "must be a positive even number (twice the MLP width)");
        Require(RotaryDim % 2 == 0 && RotaryDim <= HeadDim, "partial_rotary_factor", "must give an even number of rotated dims within head_dim");
        Require(AttentionWindowSize > 0, "attention_window_size", "must be positive");
        Require(Conv1dWidth >= 1, "conv1d_width", "must be at least 1");
        Require(BlockTypes.Count > 0, "block_types", "must not be empty");
        Require(HiddenActivation is "gelu_pytorch_tanh" or "gelu_tanh", "hidden_activation", $"'{HiddenActivation}' is not supported (gelu_pytorch_tanh)");
        Require(!AttentionBias, "attention_bias", "true is not supported (RecurrentGemma has no q/k/v bias)");
        return this;
    }

    public static GriffinConfig FromFile(string path)
    {
        try { return FromJson(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
    }

    /// <summary>Parses a Hugging Face config.json; fields it lacks take transformers' defaults.</summary>
    public static GriffinConfig FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        var d = new GriffinConfig();
        int Int(string name, int fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;
        int? OptInt(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
        double Dbl(string name, double fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        bool Bool(string name, bool fallback) => root.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
        string Str(string name, string fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : fallback;

        var hidden = Int("hidden_size", d.HiddenSize);
        IReadOnlyList<BlockKind> blocks = d.BlockTypes;
        // Current transformers writes block_types; older versions (and the 2024 Hub files) _block_types.
        foreach (var key in new[] { "block_types", "_block_types" })
        {
            if (root.TryGetProperty(key, out var arr) && arr.ValueKind == JsonValueKind.Array)
            {
                blocks = arr.EnumerateArray().Select(e => e.GetString() switch
                {
                    "recurrent" => BlockKind.Recurrent,
                    "attention" => BlockKind.Attention,
                    var other => throw new InvalidDataException($"config.json: {key} has unknown block type '{other}'"),
                }).ToArray();
                break;
            }
        }

        return new GriffinConfig
        {
            VocabSize = Int("vocab_size", d.VocabSize),
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size", d.IntermediateSize),   // transformers: 3 * 2560, whatever hidden_size is
            NumHiddenLayers = Int("num_hidden_layers", d.NumHiddenLayers),
            NumAttentionHeads = Int("num_attention_heads", d.NumAttentionHeads),
            NumKeyValueHeads = Int("num_key_value_heads", d.NumKeyValueHeads),
            HeadDimOverride = OptInt("head_dim"),
            LruWidthOverride = OptInt("lru_width"),
            AttentionWindowSize = Int("attention_window_size", d.AttentionWindowSize),
            Conv1dWidth = Int("conv1d_width", d.Conv1dWidth),
            LogitsSoftCap = Dbl("logits_soft_cap", d.LogitsSoftCap),
            RmsNormEps = Dbl("rms_norm_eps", d.RmsNormEps),
            RopeTheta = Dbl("rope_theta", d.RopeTheta),
            PartialRotaryFactor = Dbl("partial_rotary_factor", d.PartialRotaryFactor),
            BlockTypes = blocks,
            EmbeddingsScaleBySqrtDim = Bool("embeddings_scale_by_sqrt_dim", d.EmbeddingsScaleBySqrtDim),
            HiddenActivation = Str("hidden_activation", d.HiddenActivation),
            PadTokenId = Int("pad_token_id", d.PadTokenId),
            EosTokenId = Int("eos_token_id", d.EosTokenId),
            BosTokenId = Int("bos_token_id", d.BosTokenId),
            AttentionBias = Bool("attention_bias", d.AttentionBias),
        }.Validate();
    }
}

/// <summary>bfloat16 helpers on the host (round-to-nearest-even, as torch does).</summary>
public static class BFloat16
{
    public static float Round(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u;
        return BitConverter.UInt32BitsToSingle(rounded);
    }
}
