using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

public class ConfigTests
{
    [Fact]
    public void Both_block_type_keys_are_accepted()
    {
        var current = GriffinConfig.FromJson("""{"hidden_size": 64, "num_attention_heads": 4, "block_types": ["recurrent", "attention"]}""");
        var legacy = GriffinConfig.FromJson("""{"hidden_size": 64, "num_attention_heads": 4, "_block_types": ["attention", "recurrent"]}""");
        Assert.Equal([BlockKind.Recurrent, BlockKind.Attention], current.BlockTypes);
        Assert.Equal([BlockKind.Attention, BlockKind.Recurrent], legacy.BlockTypes);
        Assert.Equal(BlockKind.Recurrent, legacy.KindOf(3));
        Assert.Equal(BlockKind.Recurrent, GriffinFixture.Get("tiny-long").Config.KindOf(0));
        Assert.Equal(BlockKind.Attention, GriffinFixture.Get("tiny-long").Config.KindOf(3));
    }

    [Fact]
    public void Missing_fields_take_the_transformers_defaults()
    {
        var c = GriffinConfig.FromJson("{}");
        Assert.Equal(256000, c.VocabSize);
        Assert.Equal(2560, c.HiddenSize);
        Assert.Equal(3 * 2560, c.IntermediateSize);
        Assert.Equal(26, c.NumHiddenLayers);
        Assert.Equal(10, c.NumAttentionHeads);
        Assert.Equal(256, c.HeadDim);
        Assert.Equal(2560, c.LruWidth);
        Assert.Equal(2048, c.AttentionWindowSize);
        Assert.Equal(4, c.Conv1dWidth);
        Assert.Equal(30.0, c.LogitsSoftCap);
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal([BlockKind.Recurrent, BlockKind.Recurrent, BlockKind.Attention], c.BlockTypes);
        // A default is transformers' constant, not derived from other fields (except lru_width, head_dim).
        var small = GriffinConfig.FromJson("""{"hidden_size": 64, "num_attention_heads": 4}""");
        Assert.Equal(7680, small.IntermediateSize);
        Assert.Equal(64, small.LruWidth);
        Assert.Equal(16, small.HeadDim);
    }

    [Fact]
    public void Intermediate_size_is_twice_the_mlp_width()
    {
        var tiny = GriffinFixture.Get("tiny").Config;
        Assert.Equal(384, tiny.IntermediateSize);
        Assert.Equal(192, tiny.MlpWidth);
        Assert.Equal(7680, GriffinConfig.RecurrentGemma2B.MlpWidth);
        Assert.Equal(12288, GriffinConfig.RecurrentGemma9B.MlpWidth);
    }

    [Fact]
    public void Embedding_scale_is_the_bfloat16_rounding_of_sqrt_d()
    {
        Assert.Equal(50.5f, GriffinConfig.RecurrentGemma2B.EmbeddingScale);
        Assert.Equal(64f, GriffinConfig.RecurrentGemma9B.EmbeddingScale);
        Assert.Equal(8.9375f, GriffinFixture.Get("tiny-long").Config.EmbeddingScale);
        Assert.Equal(8f, GriffinFixture.Get("tiny").Config.EmbeddingScale);
    }

    [Fact]
    public void Presets_have_the_published_parameter_counts()
    {
        Assert.Equal(2_682_862_080, GriffinConfig.RecurrentGemma2B.ParameterCount);
        Assert.Equal(8_579_977_216, GriffinConfig.RecurrentGemma9B.ParameterCount);
        Assert.Equal(18, GriffinConfig.RecurrentGemma2B.RecurrentLayerCount);
        Assert.Equal(8, GriffinConfig.RecurrentGemma2B.AttentionLayerCount);
        Assert.Equal(26, GriffinConfig.RecurrentGemma9B.RecurrentLayerCount);
        Assert.Equal(12, GriffinConfig.RecurrentGemma9B.AttentionLayerCount);
    }

    [Theory]
    [InlineData("2b", "bf16", 17_238_016L)]
    [InlineData("2b", "f32", 34_291_712L)]
    [InlineData("9b", "bf16", 26_230_784L)]
    [InlineData("9b", "f32", 52_035_584L)]
    public void State_bytes_per_sequence_follow_the_formula(string preset, string dtype, long expected)
    {
        var c = preset == "2b" ? GriffinConfig.RecurrentGemma2B : GriffinConfig.RecurrentGemma9B;
        Assert.Equal(expected, GriffinState.BytesPerSequence(c, TorchDevices.ParseDType(dtype)));
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Allocated_state_equals_the_formula_and_the_reference_shapes(string name)
    {
        var fx = GriffinFixture.Get(name);
        var c = fx.Config;
        using var state = new GriffinState(c, 3, ScalarType.Float32, CPU);
        Assert.Equal(3 * GriffinState.BytesPerSequence(c, ScalarType.Float32), state.AllocatedBytes);
        foreach (var layer in fx.Cases.GetProperty("f").GetProperty("layers").EnumerateArray())
        {
            int l = layer.GetProperty("layer").GetInt32();
            var shapes = layer.GetProperty("shapes_in_reference");
            long[] Shape(string key) => shapes.GetProperty(key).EnumerateArray().Skip(1).Select(x => x.GetInt64()).ToArray();
            if (c.KindOf(l) == BlockKind.Recurrent)
            {
                Assert.Equal(Shape("rg_lru_state"), state.RnnOf(l, 0).shape);
                Assert.Equal(Shape("conv1d_state"), state.ConvOf(l, 0).shape);
            }
            else
            {
                Assert.Equal(Shape("keys").Where(d => d != 1).ToArray(), state.KeysOf(l, 0).shape);
                Assert.Equal(Shape("values").Where(d => d != 1).ToArray(), state.ValuesOf(l, 0).shape);
            }
        }
    }

    [Theory]
    [InlineData("""{"num_key_value_heads": 2}""", "num_key_value_heads")]
    [InlineData("""{"hidden_size": 64, "num_attention_heads": 4, "lru_width": 66}""", "lru_width")]
    [InlineData("""{"_block_types": ["recurrent", "mamba"]}""", "mamba")]
    [InlineData("""{"hidden_activation": "relu"}""", "hidden_activation")]
    public void Unsupported_configs_are_rejected_naming_the_field(string json, string field)
    {
        var e = Assert.Throws<InvalidDataException>(() => GriffinConfig.FromJson(json));
        Assert.Contains(field, e.Message);
    }
}
