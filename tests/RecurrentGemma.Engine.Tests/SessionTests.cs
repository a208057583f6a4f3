using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>Parked states: continued only when their ids are an exact prefix, only by their owner.</summary>
public class SessionTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    static async Task AssertSameAsFresh(GenerationRequest request, RunResult got)
    {
        await using var fresh = NewEngine(new EngineOptions { ParkFinishedStates = false });
        var expected = await Run(fresh, request with { SessionId = null });
        Assert.Equal(expected.Tokens[0], got.Tokens[0]);
        Assert.Equal(0, expected.Usage!.CachedTokens);
        for (int k = 0; k < expected.Logprobs[0].Count; k++)
        {
            // Equal up to float rounding: a continued state went through other chunk shapes (and
            // decode may run on another thread count) than one fresh prefill.
            Assert.Equal(expected.Logprobs[0][k].Logprob, got.Logprobs[0][k].Logprob, 1e-4);
            for (int j = 0; j < expected.Logprobs[0][k].Top.Count; j++)
                Assert.Equal(expected.Logprobs[0][k].Top[j].Logprob, got.Logprobs[0][k].Top[j].Logprob, 1e-4);
        }
    }

    [Theory]
    [InlineData("chat-1")]
    [InlineData(null)]   // automatic reuse by token ids
    public async Task The_next_turn_continues_the_final_state_and_matches_a_fresh_prefill(string? session)
    {
        await using var engine = NewEngine();
        var turn1 = await Run(engine, Greedy(Prompt, 6, session));
        Assert.Equal(0, turn1.Usage!.CachedTokens);
        // What a client sends back: the prompt, the whole answer, then the template's next turn.
        int[] turn2Prompt = [.. Prompt, .. turn1.Tokens[0], 107, 108, 106, 17, 42, 108];
        var turn2 = await Run(engine, Greedy(turn2Prompt, 6, session, logprobs: true));
        // The last sampled token was never fed, so the parked state holds prompt + 5 answer ids.
        Assert.Equal(Prompt.Length + 5, turn2.Usage!.CachedTokens);
        await AssertSameAsFresh(Greedy(turn2Prompt, 6, logprobs: true), turn2);
    }

    [Fact]
    public async Task When_the_answer_comes_back_re_tokenized_the_turn_boundary_snapshot_is_used()
    {
        await using var engine = NewEngine();
        var turn1 = await Run(engine, Greedy(Prompt, 6, "chat-2"));
        // Different ids where the answer was: only the prompt (the snapshot) can be reused.
        int[] turn2Prompt = [.. Prompt, 99, 98, 97, 107, 108, 106, 17, 108];
        var turn2 = await Run(engine, Greedy(turn2Prompt, 6, "chat-2", logprobs: true));
        Assert.Equal(Prompt.Length, turn2.Usage!.CachedTokens);
        await AssertSameAsFresh(Greedy(turn2Prompt, 6, logprobs: true), turn2);
    }

    [Fact]
    public async Task A_parked_state_is_never_used_for_a_prompt_it_is_not_a_prefix_of()
    {
        await using var engine = NewEngine();
        await Run(engine, Greedy(Prompt, 4, "s"));
        int[] changed = [.. Prompt];
        changed[3] = (changed[3] + 1) % 256;   // one id differs inside the old prompt
        var result = await Run(engine, Greedy([.. changed, 5, 6], 4, "s", logprobs: true));
        Assert.Equal(0, result.Usage!.CachedTokens);
        await AssertSameAsFresh(Greedy([.. changed, 5, 6], 4, logprobs: true), result);
        // Equal to the parked tokens is not enough either: a state needs a new token to continue.
        var same = await Run(engine, Greedy(Prompt, 4));
        Assert.Equal(0, same.Usage!.CachedTokens);
    }

    [Fact]
    public async Task Another_owner_never_continues_a_session_or_an_automatic_state()
    {
        await using var engine = NewEngine();
        await Run(engine, Greedy(Prompt, 4, "shared-id", owner: "alice"));
        await Run(engine, Greedy(Prompt, 4, owner: "alice"));
        var bob = await Run(engine, Greedy([.. Prompt, 9, 9], 4, "shared-id", owner: "bob"));
        var bobAuto = await Run(engine, Greedy([.. Prompt, 9, 9], 4, owner: "bob"));
        var alice = await Run(engine, Greedy([.. Prompt, 9, 9], 4, "shared-id", owner: "alice"));
        Assert.Equal(0, bob.Usage!.CachedTokens);
        Assert.Equal(0, bobAuto.Usage!.CachedTokens);
        Assert.True(alice.Usage!.CachedTokens > 0);
    }

    [Fact]
    public async Task One_busy_key_cannot_flush_another_keys_conversation()
    {
        // Bob parks one conversation; then Alice runs many sessions through a pool of 6 slots
        // (at most 3 parked per key). Bob's state survives and his next turn continues it.
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 6, MaxRunningSequences = 1, MaxParkedPerOwner = 3 });
        await Run(engine, Greedy([.. Prompt, 1], 3, "bob-chat", owner: "bob"));
        for (int s = 0; s < 12; s++) await Run(engine, Greedy([.. Prompt, 50 + s], 3, $"alice-{s}", owner: "alice"));
        Assert.True(engine.Snapshot.Evictions > 0);
        var bob = await Run(engine, Greedy([.. Prompt, 1, 77, 78], 3, "bob-chat", owner: "bob"));
        Assert.True(bob.Usage!.CachedTokens >= Prompt.Length + 1, $"bob's conversation was evicted ({bob.Usage.CachedTokens} cached)");
        await Until(engine, s => s.SlotsUsed == 0);
    }

    [Fact]
    public async Task Under_pressure_the_least_recently_used_parked_states_are_evicted()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, MaxRunningSequences = 1 });
        for (int s = 0; s < 5; s++) await Run(engine, Greedy([.. Prompt, s], 3, $"s{s}"));
        Assert.True(engine.Snapshot.Evictions > 0);
        // The snapshot is published after the step that ended the last stream, which can come
        // just after the stream's end reaches the caller (a CI run once read 3 here).
        await Until(engine, s => s.SlotsParked == 4);
        var oldest = await Run(engine, Greedy([.. Prompt, 0, 77, 78], 3, "s0"));
        var newest = await Run(engine, Greedy([.. Prompt, 4, 77, 78], 3, "s4"));
        Assert.Equal(0, oldest.Usage!.CachedTokens);
        Assert.True(newest.Usage!.CachedTokens >= Prompt.Length + 1);
        await Until(engine, s => s.SlotsUsed == 0);   // published after the step that ended the stream
    }

    [Fact]
    public async Task Parking_can_be_turned_off()
    {
        await using var engine = NewEngine(new EngineOptions { ParkFinishedStates = false });
        await Run(engine, Greedy(Prompt, 4, "s"));
        var next = await Run(engine, Greedy([.. Prompt, 1, 2], 4, "s"));
        Assert.Equal(0, next.Usage!.CachedTokens);
        Assert.Equal(0, engine.Snapshot.SlotsParked);
    }
}
