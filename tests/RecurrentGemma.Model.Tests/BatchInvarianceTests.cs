using RecurrentGemma.Model.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// BatchInvariance: a row's projection, and a sequence's whole decode step, have the same bits
/// whether the row comes alone or beside up to 15 others (BatchInvariance.MaxRows) — f32 and bf16, the AVX-512 loops, the
/// AVX2 loops and (where the CPU has it) the bf16 dot-product kernel, on shapes whose K and N
/// leave tails, and with a decode attention window cut into ranges. Bitwise, not "close": a
/// last-bit difference is what moves a seeded token.
/// </summary>
[Trait("Paths", "cpu-kernels")]   // tests of the CPU's own kernels: they need CpuPaths on (a GPU machine runs them on its CPU)
[Collection(nameof(SimdGemvTests))]   // flips process-wide switches: never alongside the other model tests
public class BatchInvarianceTests
{
    public static TheoryData<string, string> Variants => new()
    {
        { "f32", "avx512" }, { "f32", "rowbyrow" }, { "f32", "avx2" },
        { "bf16", "avx512" }, { "bf16", "avx2" }, { "bf16", "dot" },
    };

    /// <summary>Pins the kernel family for one test and restores the defaults after it.</summary>
    static IDisposable Pin(string kernels)
    {
        (bool? dot, bool? rowByRow) = (SimdGemv.Bf16Dot, SimdGemv.F32RowByRow);
        SimdGemv.Avx2Only = kernels == "avx2";
        SimdGemv.Bf16Dot = kernels == "dot" ? true : kernels == "avx512" ? false : null;
        SimdGemv.F32RowByRow = kernels == "rowbyrow" ? true : kernels == "avx512" ? false : null;   // a lone f32 row: one weight row at a time, or four
        return new Restore(() => { SimdGemv.Avx2Only = false; (SimdGemv.Bf16Dot, SimdGemv.F32RowByRow) = (dot, rowByRow); BatchInvariance.Enabled = true; DecodeAttention.MinKeysPerSplit = 256; });
    }

    sealed class Restore(Action undo) : IDisposable { public void Dispose() => undo(); }

    static bool Runs(string kernels) => SimdGemv.Supported && BatchInvariance.Enabled
        && (kernels is not ("avx512" or "rowbyrow") || GemvKernels512) && (kernels != "dot" || Bf16DotKernel.Available);

    static bool GemvKernels512 => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported;

    static int[] Bits(Tensor t)
    {
        using var f = t.to(ScalarType.Float32).contiguous();
        return f.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();
    }

    [Theory, MemberData(nameof(Variants))]
    public void Every_row_of_a_projection_has_the_bits_it_has_alone(string dtype, string kernels)
    {
        using var pin = Pin(kernels);
        if (!Runs(kernels)) return;
        var type = dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using var gen = new Generator(11);
        // Odd K and N % 8 = 5: vector tails in K, leftover weight rows; K = 1001 also leaves a vector past the last pair of them; 64 × 64: a tiny model's
        // weight (libtorch's, by size, without the guarantee); 20001 rows: many parts and L2 blocks.
        foreach (var (n, k, bias) in new[] { (1029, 1001, true), (64, 64, false), (20001, 96, true) })
        {
            using var linear = new Modules.Linear(k, n, bias, type, CPU);
            using (no_grad())
                foreach (var (_, p) in linear.named_parameters()) p.copy_(empty(p.shape).normal_(0, 0.05, gen));
            using var x = empty(BatchInvariance.MaxRows, k).normal_(0, 1, gen).to(type);
            foreach (int rows in new[] { 2, 3, 4, 5, 8, 9, 13, BatchInvariance.MaxRows })
            {
                using var scope = NewDisposeScope();
                var batch = Bits(linear.Forward(x.narrow(0, 0, rows)));
                for (int r = 0; r < rows; r++)
                {
                    var alone = Bits(linear.Forward(x.narrow(0, r, 1)));
                    Assert.True(alone.SequenceEqual(batch.Skip(r * n).Take(n)), $"{dtype} {kernels} [{n}, {k}]: row {r} of {rows} differs from the row alone");
                }
            }
        }
    }

    static GriffinForCausalLM SmallModel(ScalarType dtype)
    {
        var config = new GriffinConfig
        {
            VocabSize = 300, HiddenSize = 64, IntermediateSize = 192, NumHiddenLayers = 3, NumAttentionHeads = 4,
            AttentionWindowSize = 16,
        };
        var model = new GriffinForCausalLM(config, dtype, CPU);
        RandomWeights.Initialize(model, 21);
        model.Prepare();
        return model;
    }

    [Theory, MemberData(nameof(Variants))]
    public void A_decode_step_gives_each_sequence_the_logits_it_gets_alone(string dtype, string kernels)
    {
        using var pin = Pin(kernels);
        if (!Runs(kernels)) return;
        DecodeAttention.MinKeysPerSplit = 4;   // the 17 keys of this window in two ranges, as a 2B window of 2049 is cut in four
        using var model = SmallModel(dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32);
        AssertInvariant(model, BatchInvariance.MaxRows, [1, 2, 7, 11, BatchInvariance.MaxRows]);
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public void The_fixture_model_decodes_each_sequence_as_it_does_alone()
    {
        if (!SimdGemv.Supported) return;
        using var model = GriffinFixture.Get("tiny").LoadModel();
        AssertInvariant(model, BatchInvariance.MaxRows, [1, 8, BatchInvariance.MaxRows]);
    }

    /// <summary>
    /// Two copies of the same prefilled states; each decode step runs every batch size's rows on
    /// one copy and the rows one at a time on the other, with the same tokens, three steps on
    /// (the window fills past its end), and compares all logits bit for bit.
    /// </summary>
    static void AssertInvariant(GriffinForCausalLM model, int slots, int[] batchSizes)
    {
        var rng = new Random(3);
        int vocab = model.Config.VocabSize;
        var prompts = Enumerable.Range(0, slots).Select(i =>
            (IReadOnlyList<long>)Enumerable.Range(0, 3 + i % 19).Select(_ => (long)rng.Next(3, vocab)).ToList()).ToList();
        foreach (int size in batchSizes)
        {
            using var together = model.CreateState(slots);
            using var alone = model.CreateState(slots);
            for (int i = 0; i < size; i++)
            {
                using (model.Forward([prompts[i]], together, [i])) { }
                using (model.Forward([prompts[i]], alone, [i])) { }
            }
            var slotIds = Enumerable.Range(0, size).Select(i => (long)i).ToArray();
            for (int step = 0; step < 3; step++)
            {
                var tokens = slotIds.Select(s => (IReadOnlyList<long>)new long[] { (s * 7 + step * 13) % vocab }).ToList();
                using var batch = model.Forward(tokens, together, slotIds);
                var batchBits = Bits(batch);
                for (int i = 0; i < size; i++)
                {
                    using var single = model.Forward([tokens[i]], alone, [i]);
                    Assert.True(Bits(single).SequenceEqual(batchBits.Skip(i * vocab).Take(vocab)),
                        $"{model.DType}, batch of {size}, step {step}: sequence {i}'s logits differ from its logits alone");
                }
            }
        }
    }
}
