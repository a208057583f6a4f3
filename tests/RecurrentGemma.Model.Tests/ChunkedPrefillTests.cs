namespace RecurrentGemma.Model.Tests;

/// <summary>
/// What the reference cannot do and we must: prefill in chunks of any size on top of a state,
/// decode sequences at different positions together, and reuse slots cleanly.
/// </summary>
public class ChunkedPrefillTests
{
    const double Tol = 2e-4;

    public static IEnumerable<object[]> FixturesAndChunks()
    {
        foreach (var f in GriffinFixture.All())
        {
            var c = GriffinFixture.Get((string)f[0]).Config;
            int k = c.Conv1dWidth, w = c.AttentionWindowSize;
            foreach (var chunk in new[] { 1, 2, k - 1, k, w - 1, w, w + 1, 2 * w + 3, 17 }.Distinct())
                yield return [f[0], chunk];
        }
    }

    [Theory, MemberData(nameof(FixturesAndChunks))]
    public void Chunked_prefill_equals_one_full_prefill(string name, int chunk)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        using var state = model.CreateState(2);
        var got = new List<float>();
        for (int start = 0; start < seq.Length; start += chunk)
        {
            var part = seq.Skip(start).Take(chunk).ToArray();
            using var logits = model.Forward([part], state, [1], LogitsSelection.All);
            got.AddRange(Compare.Floats(logits));
        }
        Compare.Close(fx.Array("c.logits_prefill").Data, got.ToArray(), Tol, $"{name} chunk {chunk}");

        // The state after chunks equals the state after one full prefill.
        using (model.Forward([seq], state, [0])) { }
        foreach (var t in state.AllTensors())
            Compare.Close(Compare.Floats(t[0]), Compare.Floats(t[1]), 1e-4, $"{name} state after chunk {chunk}");
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Ragged_batch_of_chunks_on_top_of_different_histories_equals_each_alone(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        int w = fx.Config.AttentionWindowSize;
        // Three sequences at different depths (one past the window), then chunks of different sizes.
        int[] history = [0, 3, w + 2];
        int[] chunk = [5, 1, w + 1];
        using var together = model.CreateState(3);
        using var alone = model.CreateState(3);
        for (int i = 0; i < 3; i++)
            if (history[i] > 0)
            {
                using (model.Forward([seq[..history[i]]], together, [i])) { }
                using (model.Forward([seq[..history[i]]], alone, [i])) { }
            }
        var parts = Enumerable.Range(0, 3).Select(i => (IReadOnlyList<long>)seq.Skip(history[i]).Take(chunk[i]).ToArray()).ToList();
        using var batched = model.Forward(parts, together, [0, 1, 2], LogitsSelection.All);
        for (int i = 0; i < 3; i++)
        {
            using var single = model.Forward([parts[i]], alone, [i], LogitsSelection.All);
            using var row = batched[i].narrow(0, 0, chunk[i]);
            Compare.Close(Compare.Floats(single[0]), Compare.Floats(row), Tol, $"{name} row {i}");
        }
        // Then a batched decode step at three different positions equals three single steps.
        var next = Enumerable.Range(0, 3).Select(i => (IReadOnlyList<long>)new[] { seq[history[i] + chunk[i]] }).ToList();
        using var step = model.Forward(next, together, [0, 1, 2]);
        for (int i = 0; i < 3; i++)
        {
            using var single = model.Forward([next[i]], alone, [i]);
            Compare.Close(Compare.Floats(single), Compare.Floats(step[i]), Tol, $"{name} decode row {i}");
        }
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void A_reset_slot_is_all_zero_and_forgets_its_previous_sequence(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var c = fx.Cases.GetProperty("c");
        var seq = fx.Ids(c.GetProperty("sequence"));
        var prompt = fx.Ids(fx.Cases.GetProperty("d").GetProperty("prompt"));
        using var state = model.CreateState(2);
        using (model.Forward([seq], state, [1])) { }
        state.Reset(1);
        Assert.Equal(0, state.TokenCount(1));
        foreach (var t in state.AllTensors()) Assert.Equal(0f, Compare.Floats(t[1]).Select(Math.Abs).Max());

        using var reused = model.Forward([prompt], state, [1], LogitsSelection.All);
        using var fresh = model.CreateState(1);
        using var clean = model.Forward([prompt], fresh, [0], LogitsSelection.All);
        Compare.Close(Compare.Floats(clean), Compare.Floats(reused), 0, $"{name} reused slot");
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void A_forked_slot_continues_exactly_like_the_original(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        using var state = model.CreateState(2);
        using (model.Forward([seq[..20]], state, [0])) { }
        state.CopySlot(0, 1);
        Assert.Equal(20, state.TokenCount(1));
        using var both = model.Forward([seq[20..25], seq[20..25]], state, [0, 1], LogitsSelection.All);
        Compare.Close(Compare.Floats(both[0]), Compare.Floats(both[1]), 1e-4, $"{name} fork");
    }

    [Fact]
    public void Last_valid_logits_equal_the_last_row_of_all_logits_and_the_state_never_grows()
    {
        var fx = GriffinFixture.Get("tiny");
        using var model = fx.LoadModel();
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        using var state = model.CreateState(2);
        long bytes = state.AllocatedBytes;
        using var all = model.Forward([seq], state, [0], LogitsSelection.All);
        using var last = model.Forward([seq], state, [1]);
        Assert.Equal([1L, 1, fx.Config.VocabSize], last.shape);
        Compare.Close(Compare.Floats(all[0][^1]), Compare.Floats(last), 1e-4, "last row");
        Assert.Equal(bytes, state.AllocatedBytes);
        Assert.Equal(bytes, 2 * state.BytesPerSlot + 0 /* counters live on the host */);
    }

    [Fact]
    public void Forward_frees_every_temporary_tensor()
    {
        var fx = GriffinFixture.Get("tiny");
        using var model = fx.LoadModel();
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        using var state = model.CreateState(1);
        using (model.Forward([seq[..10]], state, [0])) { }   // warm up lazily created tensors
        long before = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 10; i < 20; i++) using (model.Forward([seq[i..(i + 1)]], state, [0])) { }
        Assert.Equal(before, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void Bad_forward_arguments_are_rejected_with_clear_messages()
    {
        var fx = GriffinFixture.Get("tiny");
        using var model = fx.LoadModel();
        using var state = model.CreateState(2);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([new long[] { 2, 999 }], state, [0])).Message);
        Assert.Contains("distinct", Assert.Throws<ArgumentException>(() => model.Forward([new long[] { 2 }, new long[] { 2 }], state, [0, 0])).Message);
        Assert.Contains("slot 5", Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([new long[] { 2 }], state, [5])).Message);
    }
}
