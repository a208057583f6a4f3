namespace RecurrentGemma.Engine.Tests;

/// <summary>The state store on its own: which parked state a prompt may continue, and who is evicted.</summary>
public class StateStoreTests
{
    static StateStore NewStore(int capacity, int maxParkedPerOwner = 0) =>
        new(EngineHarness.FixtureModel(), capacity, maxParkedPerOwner);

    static int Park(StateStore store, int[] tokens, string? session = null, string? owner = null)
    {
        var slot = store.TryAcquire()!.Value;
        store.Park(slot, tokens, session, owner);
        return slot;
    }

    [Fact]
    public void The_lowest_free_slot_is_handed_out_first_so_live_states_stay_packed()
    {
        // Packed slots let a decode batch in slot order read its attention windows as a few runs.
        using var store = NewStore(5);
        Assert.Equal([0, 1, 2, 3], Enumerable.Range(0, 4).Select(_ => store.TryAcquire()!.Value).ToArray());
        store.Release(2);
        store.Release(0);
        store.Release(3);
        Assert.Equal(0, store.TryAcquire());
        Assert.Equal(2, store.TryAcquire());
        Assert.Equal(3, store.TryAcquire());
        Assert.Equal(4, store.TryAcquire());
        Assert.Equal(0, store.FreeCount);
    }

    [Fact]
    public void A_parked_state_equal_to_the_whole_prompt_is_never_taken()
    {
        // Continuing needs at least one new token to feed: a state that consumed the whole prompt
        // has no logits for the next token, so it must not match.
        using var store = NewStore(4);
        Park(store, [2, 10, 11, 12]);
        Assert.Null(store.FindMatch([2, 10, 11, 12], null, null));
        Park(store, [2, 10, 11]);
        Assert.Equal([2, 10, 11], store.FindMatch([2, 10, 11, 12], null, null)!.Tokens);
        Assert.Equal([2, 10, 11, 12], store.FindMatch([2, 10, 11, 12, 13], null, null)!.Tokens);   // the longest prefix wins
    }

    [Fact]
    public void Only_an_exact_prefix_of_the_same_owner_and_session_matches()
    {
        using var store = NewStore(4);
        Park(store, [2, 10, 11], session: "s", owner: "a");
        Assert.Null(store.FindMatch([2, 10, 12, 13], "s", "a"));   // differs inside
        Assert.Null(store.FindMatch([2, 10, 11, 13], "s", "b"));   // another owner
        Assert.Null(store.FindMatch([2, 10, 11, 13], null, "a"));  // no session
        Assert.NotNull(store.FindMatch([2, 10, 11, 13], "s", "a"));
    }

    [Fact]
    public void An_owner_keeps_at_most_its_cap_of_parked_states_dropping_its_oldest()
    {
        using var store = NewStore(8, maxParkedPerOwner: 2);
        Park(store, [2, 1], owner: "a");
        Park(store, [2, 2], owner: "a");
        Park(store, [2, 3], owner: "a");
        Assert.Equal(2, store.ParkedBy("a"));
        Assert.Null(store.FindMatch([2, 1, 9], null, "a"));   // the oldest went
        Assert.NotNull(store.FindMatch([2, 3, 9], null, "a"));
        Assert.Equal(6, store.FreeCount);
        // The shared owner of keyless requests is one principal and is not capped.
        for (int i = 0; i < 4; i++) Park(store, [2, 50 + i]);
        Assert.Equal(4, store.ParkedBy(null));
    }

    [Fact]
    public void A_busy_owner_evicts_its_own_states_before_anyone_elses()
    {
        using var store = NewStore(6);
        Park(store, [2, 100], session: "b1", owner: "b");   // b's conversation, the oldest of all
        for (int i = 0; i < 5; i++) Park(store, [2, i], owner: "a");   // a fills the rest of the pool
        Assert.Equal(0, store.FreeCount);

        // a needs slots again and again: each time its own least recently used state goes.
        for (int i = 0; i < 4; i++)
        {
            var slot = store.TryAcquire()!.Value;
            store.Park(slot, [2, 10 + i], null, "a");
        }
        Assert.NotNull(store.FindMatch([2, 100, 7], "b1", "b"));
        Assert.Equal(1, store.ParkedBy("b"));
        Assert.Equal(5, store.ParkedBy("a"));
    }

    [Fact]
    public void Taking_a_parked_state_removes_it_and_counts_the_reuse()
    {
        using var store = NewStore(2);
        Park(store, [2, 5, 6]);
        var match = store.FindMatch([2, 5, 6, 7], null, null)!;
        store.Take(match);
        Assert.Equal(0, store.ParkedCount);
        Assert.Equal(3, store.ReusedTokens);
        Assert.Throws<InvalidOperationException>(() => store.Take(match));
    }

    [Fact]
    public void Evicted_states_go_to_host_memory_within_its_budget_and_come_back_intact()
    {
        var model = EngineHarness.FixtureModel();
        long perState = RecurrentGemma.Model.GriffinState.BytesPerSequence(model.Config, model.DType);
        using var store = new StateStore(model, 2, maxParkedPerOwner: 0, hostBytes: 3 * perState);
        // Mark each parked state's tensors with its own number, to see that the restored one is the same.
        for (int k = 0; k < 8; k++)
        {
            var slot = store.TryAcquire()!.Value;
            foreach (var t in store.State.AllTensors()) { using var row = t[slot]; row.fill_(RecurrentGemma.Model.Scalars.Of((double)k)); }
            store.Park(slot, [2, 100 + k], null, "a");
        }
        var (count, bytes, demotions, _) = store.HostTierStats;
        Assert.Equal(3, count);                 // the budget holds three
        Assert.Equal(3 * perState, bytes);
        Assert.Equal(6, demotions);             // eight parked into two slots: six left the pool
        Assert.Null(store.FindMatch([2, 100, 9], null, "a"));   // the oldest fell out of host memory too
        var match = store.FindMatch([2, 105, 9], null, "a")!;
        Assert.False(match.OnDevice);
        int restored = store.Take(match);
        foreach (var t in store.State.AllTensors())
        {
            using var row = t[restored];
            Assert.Equal(5.0, row.max().to(TorchSharp.torch.ScalarType.Float64).item<double>());
            Assert.Equal(5.0, row.min().to(TorchSharp.torch.ScalarType.Float64).item<double>());
        }
        // Restoring took a slot: the pool's least recently used state went down to host memory in its place.
        Assert.Equal(3, store.HostTierStats.Count);
        Assert.Equal(7, store.HostTierStats.Demotions);
        Assert.Equal(1, store.HostTierStats.Restores);
    }
}
