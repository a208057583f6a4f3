using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>The multi-threaded small-batch f32 matmul equals libtorch's own (fixture weights are
/// below its size threshold, so it is checked here on its own).</summary>
[Trait("Paths", "cpu-kernels")]   // tests of the CPU's own kernels: they need CpuPaths on (a GPU machine runs them on its CPU)
public class SplitGemvTests
{
    [Theory]
    [InlineData(1, true)]
    [InlineData(3, false)]
    [InlineData(8, true)]
    public void Split_matmul_equals_one_call(int rows, bool withBias)
    {
        using var gen = new Generator(3);
        using var w = empty(3000, 1024).normal_(0, 0.05, gen);   // 3M elements, uneven split
        using var b = empty(3000).normal_(0, 0.1, gen);
        using var x = empty(rows, 1024).normal_(0, 1, gen);
        Assert.True(SplitGemv.Applies(x, w) || Environment.ProcessorCount == 1);
        using var expected = nn.functional.linear(x, w, withBias ? b : null);
        using var actual = SplitGemv.Linear(x, w, withBias ? b : null);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.allclose(actual, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void Forgetting_a_weight_drops_its_views_and_a_later_call_cuts_it_again()
    {
        if (Environment.ProcessorCount == 1) return;
        using var gen = new Generator(4);
        using var w = empty(2048, 1024).normal_(0, 0.05, gen);
        using var x = empty(2, 1024).normal_(0, 1, gen);
        using var expected = nn.functional.linear(x, w);
        using (SplitGemv.Linear(x, w, null)) { }
        Assert.True(SplitGemv.Holds(w));
        SplitGemv.Forget(w);
        Assert.False(SplitGemv.Holds(w));
        SplitGemv.Forget(w);                 // a second time: nothing to drop
        using var again = SplitGemv.Linear(x, w, null);
        Assert.True(SplitGemv.Holds(w));
        Assert.True(expected.allclose(again, rtol: 1e-5, atol: 1e-5));
        SplitGemv.Forget(w);
    }

    [Fact]
    public void Larger_batches_and_bf16_keep_the_regular_path()
    {
        using var w = zeros(3000, 1024);
        using var many = zeros(9, 1024);
        using var wb = zeros(new long[] { 3000, 1024 }, ScalarType.BFloat16);
        using var one = zeros(new long[] { 1, 1024 }, ScalarType.BFloat16);
        Assert.False(SplitGemv.Applies(many, w));
        Assert.False(SplitGemv.Applies(one, wb));
    }

    [Fact]
    public void A_large_model_decodes_the_same_with_and_without_the_split()
    {
        var config = new GriffinConfig
        {
            VocabSize = 4096, HiddenSize = 512, IntermediateSize = 4096, NumHiddenLayers = 3,
            NumAttentionHeads = 4, LruWidthOverride = 512, AttentionWindowSize = 16,
        };
        using var model = new GriffinForCausalLM(config, ScalarType.Float32, CPU);
        RandomWeights.Initialize(model, 8);
        long[] prompt = [2, 5, 900, 77, 1024, 3000, 12];
        float[] Logits(bool split)
        {
            SplitGemv.Enabled = split;
            try
            {
                using var state = model.CreateState(2);
                using (model.Forward([prompt, prompt[..4]], state, [0, 1])) { }
                using var step = model.Forward([new long[] { 42 }, new long[] { 43 }], state, [0, 1]);
                return Compare.Floats(step);
            }
            finally { SplitGemv.Enabled = true; }
        }
        Compare.Close(Logits(false), Logits(true), 1e-4, "decode with the split");
    }
}
