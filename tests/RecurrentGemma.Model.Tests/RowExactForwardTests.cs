using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// RowExactForward: prompts that share one forward each get the logits and the state they get
/// in a forward alone, bit for bit — first chunks and chunks on top of history, rows in any
/// order and of lengths 1 to past the attention window, f32 and bf16 — and those logits are the
/// model's (close to the padded batch's, which the reference tests pin).
/// </summary>
[Trait("Paths", "cpu-kernels")]   // rests on the CPU's own GEMM kernels
[Trait("Device", "cpu-only")]
[Collection(nameof(SimdGemvTests))]   // reads process-wide kernel switches: never alongside tests that flip them
public class RowExactForwardTests
{
    static int[] Bits(Tensor t)
    {
        using var f = t.to(ScalarType.Float32).contiguous();
        return f.data<float>().ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();
    }

    /// <summary>Each state tensor's row of the slot, as bytes (the snapshot's buffers may be longer).</summary>
    static byte[][] StateBytes(GriffinState state, int slot)
    {
        using var snapshot = state.ExportSlot(slot);
        var layout = GriffinState.SlotLayout(state.Config, state.DType);
        return snapshot.Rows.Select((row, i) =>
        {
            long bytes = layout[i].Shape.Aggregate(1L, (a, d) => a * d) * (layout[i].Type == ScalarType.Float32 ? 4 : 2);
            return row.AsSpan(0, (int)bytes).ToArray();
        }).ToArray();
    }

    public static TheoryData<string, string> Models => new()
    {
        { "tiny", "f32" }, { "tiny", "bf16" }, { "tiny-long", "f32" }, { "tiny-long", "bf16" },
    };

    [Theory, MemberData(nameof(Models))]
    public void Prompts_sharing_a_row_exact_forward_get_the_bits_they_get_alone(string fixture, string dtype)
    {
        var type = dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        var f = GriffinFixture.Get(fixture);
        using var model = f.LoadModel(dtype == "bf16" ? "model.bf16.safetensors" : null, type);
        if (!model.RowExactAvailable)
        {
            // Where the kernel is missing the engine falls back to a forward per seeded prompt; the plan refuses.
            using var buffer = new StepBuffer(model.Device);
            using var s = model.CreateState(1);
            Assert.Throws<InvalidOperationException>(() => model.Plan(buffer, s, [new long[] { 1 }], [0], rowExact: true));
            return;
        }
        int vocab = model.Config.VocabSize, w = model.Config.AttentionWindowSize;
        var rng = new Random(5);
        // Lengths from one token to several windows; the slots out of order.
        int[] lengths = [1, 2, 5, w + 3, 3 * w + 1, 17, 1, 40];
        long[] slots = [6, 0, 3, 1, 7, 2, 5, 4];
        List<IReadOnlyList<long>> Chunk(int salt) => lengths.Select((n, i) =>
            (IReadOnlyList<long>)Enumerable.Range(0, n + (salt * (i + 1)) % 4).Select(_ => (long)rng.Next(0, vocab)).ToList()).ToList();

        using var together = model.CreateState(8);
        using var alone = model.CreateState(8);
        using var padded = model.CreateState(8);
        for (int round = 0; round < 3; round++)   // round 0: fresh slots; then chunks on top of history
        {
            var chunks = Chunk(round);
            using var shared = model.Forward(chunks, together, slots, rowExact: true);
            Assert.Equal([8, 1, vocab], shared.shape);
            var sharedBits = Bits(shared);
            using var reference = model.Forward(chunks, padded, slots);   // the ordinary padded batch
            var sharedFloats = Compare.Floats(shared);
            // bf16: two summation orders of bf16 arithmetic (the reference's own bf16 run drifts ~1.0 from f32 on these weights).
            Compare.Close(Compare.Floats(reference), sharedFloats, type == ScalarType.Float32 ? 2e-4 : 1.0, $"{fixture} {dtype} round {round}: row-exact vs padded logits");
            for (int i = 0; i < chunks.Count; i++)
            {
                using var single = model.Forward([chunks[i]], alone, [slots[i]], rowExact: true);
                Assert.True(Bits(single).SequenceEqual(sharedBits.Skip(i * vocab).Take(vocab)),
                    $"{fixture} {dtype} round {round}: row {i} ({chunks[i].Count} tokens) differs from its forward alone");
                Assert.Equal(alone.TokenCount((int)slots[i]), together.TokenCount((int)slots[i]));
                var a = StateBytes(alone, (int)slots[i]);
                var b = StateBytes(together, (int)slots[i]);
                for (int t = 0; t < a.Length; t++)
                    Assert.True(a[t].AsSpan().SequenceEqual(b[t]), $"{fixture} {dtype} round {round}: row {i}'s state tensor {t} differs from its state alone");
            }
        }
    }

    [Fact]
    public void A_row_exact_plan_refuses_what_it_cannot_give()
    {
        using var model = GriffinFixture.Get("tiny").LoadModel();
        if (!model.RowExactAvailable) return;
        using var buffer = new StepBuffer(model.Device);
        using var state = model.CreateState(1);
        Assert.Throws<ArgumentException>(() => model.Plan(buffer, state, [new long[] { 1, 2 }], [0], LogitsSelection.All, rowExact: true));
    }
}
