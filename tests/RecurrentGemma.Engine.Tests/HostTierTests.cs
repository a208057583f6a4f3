using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>Parked states evicted from the device pool live on in host memory and are restored on demand.</summary>
public class HostTierTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    [Fact]
    public async Task An_evicted_conversation_is_restored_from_host_memory_and_continues_exactly()
    {
        // Two slots, one running at a time: every new conversation evicts the oldest parked state.
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 2, MaxRunningSequences = 1, HostMemoryMiB = 64, SnapshotAtPromptEnd = false });
        var first = await Run(engine, Greedy([.. Prompt, 1], 4, "a"));
        for (int s = 0; s < 4; s++) await Run(engine, Greedy([.. Prompt, 20 + s], 3, $"other-{s}"));
        Assert.True(engine.Snapshot.Demotions > 0);
        Assert.True(engine.Snapshot.HostStates > 0);

        int[] next = [.. Prompt, 1, .. first.Tokens[0], 77, 78];
        var resumed = await Run(engine, Greedy(next, 5, "a", logprobs: true));
        Assert.Equal(1, engine.Snapshot.HostRestores);
        Assert.Equal(Prompt.Length + 1 + first.Tokens[0].Count - 1, resumed.Usage!.CachedTokens);   // all but the last sampled id were fed

        await using var fresh = NewEngine(new EngineOptions { MaxSlots = 2, ParkFinishedStates = false });
        var expected = await Run(fresh, Greedy(next, 5, logprobs: true));
        Assert.Equal(expected.Tokens[0], resumed.Tokens[0]);
        for (int i = 0; i < expected.Logprobs[0].Count; i++)
            Assert.True(Math.Abs(expected.Logprobs[0][i].Logprob - resumed.Logprobs[0][i].Logprob) < 1e-4, $"logprob {i}");
        await Until(engine, s => s.SlotsUsed == 0);
    }

    [Fact]
    public async Task Host_memory_holds_to_its_budget_and_never_serves_another_owner()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 2, MaxRunningSequences = 1, HostMemoryMiB = 1, SnapshotAtPromptEnd = false });
        long perState = engine.Snapshot.StateBytesPerSlot;
        for (int s = 0; s < 12; s++) await Run(engine, Greedy([.. Prompt, 30 + s], 2, $"s{s}", owner: "alice"));
        var snap = engine.Snapshot;
        Assert.True(snap.HostBytes <= 1024 * 1024, $"{snap.HostBytes} bytes in host memory");
        Assert.Equal(snap.HostBytes, snap.HostStates * perState);

        var bob = await Run(engine, Greedy([.. Prompt, 41, 5, 6], 2, "s11", owner: "bob"));
        Assert.Equal(0, bob.Usage!.CachedTokens);
    }
}
