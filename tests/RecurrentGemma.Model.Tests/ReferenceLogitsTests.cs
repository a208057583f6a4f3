using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>Cases a–d of every golden fixture: logits and greedy tokens equal Google's reference.</summary>
public class ReferenceLogitsTests
{
    const double Tol = 2e-4;

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void A_batch_of_two_different_lengths_prefills_to_the_reference_logits(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var seqs = fx.Cases.GetProperty("a").GetProperty("sequences").EnumerateArray().Select(fx.Ids).ToArray();
        using var state = model.CreateState(2);
        // One ragged batch (the shorter row right-padded), all positions' logits.
        using var logits = model.Forward(seqs.Select(s => (IReadOnlyList<long>)s).ToList(), state, [0, 1], LogitsSelection.All);
        int v = fx.Config.VocabSize;
        for (int i = 0; i < seqs.Length; i++)
        {
            var expected = fx.Array($"a.seq{i}.logits").Data;
            using var row = logits[i].narrow(0, 0, seqs[i].Length);
            Compare.Close(expected, Compare.Floats(row), Tol, $"{name} a.seq{i}");
            Assert.Equal(seqs[i].Length, state.TokenCount(i));
        }
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void B_prefill_prefix_then_batched_decode_of_sequences_at_different_positions(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var b = fx.Cases.GetProperty("b");
        var seqs = fx.Cases.GetProperty("a").GetProperty("sequences").EnumerateArray().Select(fx.Ids).ToArray();
        var prefix = b.GetProperty("prefix_len").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        int v = fx.Config.VocabSize;
        using var state = model.CreateState(2);
        var got = seqs.Select(_ => new List<float>()).ToArray();

        using (var pre = model.Forward(seqs.Select((s, i) => (IReadOnlyList<long>)s.Take(prefix[i]).ToArray()).ToList(), state, [0, 1], LogitsSelection.All))
            for (int i = 0; i < 2; i++) { using var r = pre[i].narrow(0, 0, prefix[i]); got[i].AddRange(Compare.Floats(r)); }

        // Decode one token per step for every sequence that still has input, batched together.
        while (true)
        {
            var active = Enumerable.Range(0, 2).Where(i => state.TokenCount(i) < seqs[i].Length).ToArray();
            if (active.Length == 0) break;
            var next = active.Select(i => (IReadOnlyList<long>)new[] { seqs[i][state.TokenCount(i)] }).ToList();
            using var step = model.Forward(next, state, active.Select(i => (long)i).ToArray());
            for (int k = 0; k < active.Length; k++) { using var r = step[k]; got[active[k]].AddRange(Compare.Floats(r)); }
        }
        for (int i = 0; i < 2; i++)
            Compare.Close(fx.Array($"b.seq{i}.logits").Data, got[i].ToArray(), Tol, $"{name} b.seq{i}");
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void C_long_sequence_full_prefill_and_every_decode_path(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var c = fx.Cases.GetProperty("c");
        var seq = fx.Ids(c.GetProperty("sequence"));
        Assert.True(seq.Length > 3 * fx.Config.AttentionWindowSize, "case c must be several windows long");
        var expected = fx.Array("c.logits_prefill").Data;
        int v = fx.Config.VocabSize;

        using (var state = model.CreateState(1))
        using (var full = model.Forward([seq], state, [0], LogitsSelection.All))
            Compare.Close(expected, Compare.Floats(full), Tol, $"{name} c full prefill");

        var stored = c.GetProperty("decode_paths_stored").EnumerateObject().ToDictionary(p => int.Parse(p.Name), p => p.Value.GetString()!);
        foreach (var p in c.GetProperty("decode_paths_checked").EnumerateArray().Select(x => x.GetInt32()))
        {
            using var state = model.CreateState(1);
            var got = new List<float>();
            if (p > 0)
                using (var pre = model.Forward([seq.Take(p).ToArray()], state, [0], LogitsSelection.All)) got.AddRange(Compare.Floats(pre));
            for (int t = p; t < seq.Length; t++)
                using (var step = model.Forward([new[] { seq[t] }], state, [0])) got.AddRange(Compare.Floats(step));
            Compare.Close(expected, got.ToArray(), Tol, $"{name} c decode after prefix {p}");
            if (stored.TryGetValue(p, out var arr))
                Compare.Close(fx.Array(arr).Data, got.ToArray(), Tol, $"{name} {arr}");
        }
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void D_greedy_continuation_is_token_exact(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var d = fx.Cases.GetProperty("d");
        AssertGreedy(fx, model, fx.Ids(d.GetProperty("prompt")), fx.Ids(d.GetProperty("generated")), fx.Array("d.step_logits").Data);
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Bf16_weights_upcast_to_f32_match_the_reference(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel("model.bf16.safetensors");
        var bf = fx.Cases.GetProperty("bf16");
        var seqs = fx.Cases.GetProperty("a").GetProperty("sequences").EnumerateArray().Select(fx.Ids).ToArray();
        var names = bf.GetProperty("a_logits").EnumerateArray().Select(x => x.GetString()!).ToArray();
        for (int i = 0; i < seqs.Length; i++)
        {
            using var state = model.CreateState(1);
            using var logits = model.Forward([seqs[i]], state, [0], LogitsSelection.All);
            Compare.Close(fx.Array(names[i]).Data, Compare.Floats(logits), Tol, $"{name} {names[i]}");
        }
        var d = fx.Cases.GetProperty("d");
        AssertGreedy(fx, model, fx.Ids(d.GetProperty("prompt")), fx.Ids(bf.GetProperty("d_generated")), fx.Array(bf.GetProperty("d_step_logits").GetString()!).Data);
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Bf16_arithmetic_stays_within_the_drift_the_reference_shows(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel("model.bf16.safetensors", ScalarType.BFloat16);
        var seqs = fx.Cases.GetProperty("a").GetProperty("sequences").EnumerateArray().Select(fx.Ids).ToArray();
        var informational = fx.Cases.GetProperty("bf16").GetProperty("a_logits").EnumerateArray().Select(x => x.GetString()!).ToArray();
        for (int i = 0; i < seqs.Length; i++)
        {
            using var state = model.CreateState(1);
            using var logits = model.Forward([seqs[i]], state, [0], LogitsSelection.All);
            // The reference's own all-bf16 run drifts ~1.0 from f32 arithmetic on these weights.
            Compare.Close(fx.Array(informational[i]).Data, Compare.Floats(logits), 2.5, $"{name} bf16 compute vs f32 compute");
        }
    }

    internal static void AssertGreedy(GriffinFixture fx, GriffinForCausalLM model, long[] prompt, long[] expectedTokens, float[] expectedStepLogits)
    {
        int v = fx.Config.VocabSize;
        using var state = model.CreateState(1);
        var logits = model.Forward([prompt], state, [0]);
        var tokens = new List<long>();
        var stepLogits = new List<float>();
        for (int k = 0; k < expectedTokens.Length; k++)
        {
            var row = Compare.Floats(logits);
            logits.Dispose();
            stepLogits.AddRange(row);
            long next = Compare.ArgMax(row);
            tokens.Add(next);
            logits = model.Forward([new[] { next }], state, [0]);
        }
        logits.Dispose();
        Assert.Equal(expectedTokens, tokens);
        Compare.Close(expectedStepLogits, stepLogits.ToArray(), Tol, $"{fx.Name} greedy step logits");
    }
}
