using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// Many-row bf16 matmuls on the CPU run natively or as float32 on up-cast copies, whichever this
/// machine runs faster: the rule that turns timings into a row count, and both paths' results.
/// </summary>
[Trait("Paths", "cpu-kernels")]   // tests of the CPU's own kernels: they need CpuPaths on (a GPU machine runs them on its CPU)
[Collection(nameof(Bf16UpcastTests))]   // pins a process-wide switch: never alongside the other model tests
[CollectionDefinition(nameof(Bf16UpcastTests), DisableParallelization = true)]
public class Bf16UpcastTests
{
    [Fact]
    public void Up_casting_starts_at_the_smallest_row_count_from_which_it_keeps_winning()
    {
        Assert.Equal(256, Bf16Upcast.Choose([(64, 0.99), (256, 0.8)]));
        Assert.Equal(64, Bf16Upcast.Choose([(64, 0.7), (256, 0.8)]));
        Assert.Equal(long.MaxValue, Bf16Upcast.Choose([(64, 0.7), (256, 1.1)]));   // losing at the largest: never
        Assert.Equal(long.MaxValue, Bf16Upcast.Choose([(64, 0.96), (256, 0.95)]));  // a tie keeps native bf16
        Assert.Equal(long.MaxValue, Bf16Upcast.Choose([]));
    }

    [Fact]
    public void The_decision_is_measured_here_and_says_what_it_timed()
    {
        long from = Bf16Upcast.FromRows;
        Assert.True(from is 128 or 512 or long.MaxValue, $"from {from}");
        var text = Bf16Upcast.Describe();
        Assert.Contains("128 rows", text);
        Assert.Contains("512 rows", text);
        Assert.Contains(from == long.MaxValue ? "native bf16" : $"{from}+ rows up-cast", text);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_pinned_choice_gives_float32_math_rounded_once_or_libtorchs_bf16(bool upcast)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var gen = new Generator(9);
        var linear = new Linear(96, 200, true, ScalarType.BFloat16, CPU);
        foreach (var p in linear.parameters()) p.copy_(empty(p.shape).normal_(0, 0.1, gen));
        var x = empty(40, 96).normal_(0, 1, gen).to(ScalarType.BFloat16);
        var (w, b) = (linear.parameters().First(p => p.dim() == 2), linear.parameters().First(p => p.dim() == 1));
        var exact = nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32), b.to(ScalarType.Float32)).to(ScalarType.BFloat16);
        var native = nn.functional.linear(x, w, b);
        var saved = Linear.UpcastBf16OnCpu;
        try
        {
            Linear.UpcastBf16OnCpu = upcast;
            // Both paths may round the same (libtorch sums bf16 products in float32 too), so the
            // path is told apart by the tensors it makes: the up-cast copies x, W, b and y.
            long before = TensorCount.Created;
            var y = linear.Forward(x);
            long made = TensorCount.Created - before;
            Assert.Equal(upcast ? 5 : 1, made);
            Assert.Equal(ScalarType.BFloat16, y.dtype);
            if (upcast) Assert.True(y.eq(exact).all().item<bool>(), "up-cast: float32 math rounded once to bf16");
            else Assert.True(y.eq(native).all().item<bool>(), "native: libtorch's bf16 matmul as it is");
        }
        finally { Linear.UpcastBf16OnCpu = saved; }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public void A_bf16_prefill_chunk_attends_in_float32_when_pinned_and_stays_within_the_reference_drift()
    {
        var fx = GriffinFixture.Get("tiny-long");   // window 6: the second chunk attends over its history
        var seq = fx.Ids(fx.Cases.GetProperty("a").GetProperty("sequences")[0]);
        var expected = fx.Array(fx.Cases.GetProperty("bf16").GetProperty("a_logits")[0].GetString()!).Data;
        int attention = Enumerable.Range(0, fx.Config.NumHiddenLayers).Count(l => fx.Config.KindOf(l) == BlockKind.Attention);
        (int At, int Length)[] chunks = [(0, 20), (20, seq.Length - 20)];
        var made = new Dictionary<bool, long[]>();
        var savedLinear = Linear.UpcastBf16OnCpu;
        var savedChunks = LocalAttentionBlock.UpcastBf16Chunks;
        try
        {
            Linear.UpcastBf16OnCpu = false;   // only the attention differs between the two runs
            foreach (bool upcast in new[] { true, false })
            {
                LocalAttentionBlock.UpcastBf16Chunks = upcast;
                using var model = fx.LoadModel("model.bf16.safetensors", ScalarType.BFloat16);
                using var state = model.CreateState(1);
                var logits = new List<float>();
                made[upcast] = new long[chunks.Length];
                for (int c = 0; c < chunks.Length; c++)
                {
                    long before = TensorCount.Created;
                    using var l = model.Forward([seq[chunks[c].At..(chunks[c].At + chunks[c].Length)]], state, [0], LogitsSelection.All);
                    made[upcast][c] = TensorCount.Created - before;
                    Assert.Equal(ScalarType.Float32, l.dtype);
                    logits.AddRange(Compare.Floats(l));
                }
                // The reference's own all-bf16 run drifts ~1.0 from f32 arithmetic on these weights.
                Compare.Close(expected, logits.ToArray(), 2.5, $"bf16 chunks, attention up-cast {upcast}");
            }
        }
        finally { Linear.UpcastBf16OnCpu = savedLinear; LocalAttentionBlock.UpcastBf16Chunks = savedChunks; }
        // Per attention layer the up-cast copies q, k, v and the output and skips the softmax's
        // cast back to bf16 (3 more tensors); with history it also copies the window's k and v (5).
        Assert.Equal(3L * attention, made[true][0] - made[false][0]);
        Assert.Equal(5L * attention, made[true][1] - made[false][1]);
    }
}
