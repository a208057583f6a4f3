using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// Continuing a stored state by copy (ParentSessionId), as stored responses are continued: the
/// parent is never changed, so it can be continued again; dropping a conversation frees it in
/// every tier; KeepState false parks nothing.
/// </summary>
public sealed class BranchingTests : IDisposable
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-branch-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    static int[] Next(int[] prompt, RunResult turn, int word) => [.. prompt, .. turn.Tokens[0], 107, 108, 106, 17, word, 108];

    [Theory]
    [InlineData(16, 0)]   // the parent stays on the device; the branch gets a copy
    [InlineData(2, 64)]   // a tight pool: the parent is demoted to host memory and copied back
    public async Task A_parent_continued_twice_gives_two_independent_branches_equal_to_fresh_prefills(int slots, int hostMiB)
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = slots, MaxRunningSequences = 1, HostMemoryMiB = hostMiB });
        var parent = await Run(engine, Greedy(Prompt, 6, "resp_a"));
        var promptA = Next(Prompt, parent, 42);
        var promptB = Next(Prompt, parent, 77);

        var a = await Run(engine, Greedy(promptA, 6, "resp_b", logprobs: true) with { ParentSessionId = "resp_a" });
        var b = await Run(engine, Greedy(promptB, 6, "resp_c", logprobs: true) with { ParentSessionId = "resp_a" });
        var a2 = await Run(engine, Greedy(promptA, 6, "resp_d", logprobs: true) with { ParentSessionId = "resp_a" });

        // Each continuation found the parent's whole final state (prompt + 5 fed answer ids).
        Assert.All(new[] { a, b, a2 }, r => Assert.Equal(Prompt.Length + 5, r.Usage!.CachedTokens));
        Assert.Equal(a.Tokens[0], a2.Tokens[0]);   // the first branch did not change the parent

        await using var fresh = NewEngine(new EngineOptions { ParkFinishedStates = false });
        Assert.Equal((await Run(fresh, Greedy(promptA, 6))).Tokens[0], a.Tokens[0]);
        Assert.Equal((await Run(fresh, Greedy(promptB, 6))).Tokens[0], b.Tokens[0]);

        // A branch is continued under its own id, from its own final state.
        var grandchild = await Run(engine, Greedy(Next(promptB, b, 9), 4, "resp_e") with { ParentSessionId = "resp_c" });
        Assert.Equal(promptB.Length + 5, grandchild.Usage!.CachedTokens);
    }

    [Fact]
    public async Task A_copy_is_only_made_from_the_named_parent_and_owner()
    {
        await using var engine = NewEngine();
        var parent = await Run(engine, Greedy(Prompt, 6, "resp_a", owner: "k1"));
        var next = Next(Prompt, parent, 42);
        Assert.Equal(0, (await Run(engine, Greedy(next, 3, "x", owner: "k2") with { ParentSessionId = "resp_a" })).Usage!.CachedTokens);
        Assert.Equal(0, (await Run(engine, Greedy(next, 3, "y", owner: "k1") with { ParentSessionId = "other" })).Usage!.CachedTokens);
        Assert.True((await Run(engine, Greedy(next, 3, "z", owner: "k1") with { ParentSessionId = "resp_a" })).Usage!.CachedTokens > 0);
    }

    [Fact]
    public async Task Dropping_a_conversation_frees_it_in_the_pool_in_host_memory_and_on_disk()
    {
        // No API key (owner null): no per-owner cap, so the pool's LRU decides what moves to host memory.
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 2, MaxRunningSequences = 1, HostMemoryMiB = 64, StorePath = _dir, SnapshotAtPromptEnd = false });
        var first = await Run(engine, Greedy(Prompt, 6, "resp_a"));
        // Two more conversations push resp_a out of the two-slot pool into host memory.
        var x = await Run(engine, Greedy([.. Prompt, 5], 3, "resp_x"));
        await Run(engine, Greedy([.. Prompt, 6], 3, "resp_y"));
        await WaitFor(() => engine.Disk!.Writes >= 3);
        Assert.Equal(1, engine.Snapshot.HostStates);
        Assert.Equal(3, Directory.GetFiles(_dir).Length);

        Assert.Equal(0, await engine.DropSessionAsync("resp_a", "someone-else"));
        Assert.Equal(2, await engine.DropSessionAsync("resp_a", null));   // the host copy and the stored record
        Assert.Equal(0, engine.Snapshot.HostStates);
        Assert.Equal(2, Directory.GetFiles(_dir).Length);
        Assert.Equal(0, await engine.DropSessionAsync("resp_a", null));

        // Nothing of it is left to continue: the next turn prefills everything.
        var again = await Run(engine, Greedy(Next(Prompt, first, 42), 3, "resp_b") with { ParentSessionId = "resp_a" });
        Assert.Equal(0, again.Usage!.CachedTokens);
        // The other conversations were not touched.
        Assert.True((await Run(engine, Greedy(Next([.. Prompt, 5], x, 4), 2, "resp_x2") with { ParentSessionId = "resp_x" })).Usage!.CachedTokens > 0);
        int before = engine.Snapshot.SlotsParked + engine.Snapshot.HostStates;
        int droppedX = await engine.DropSessionAsync("resp_x", null);
        Assert.Equal(before - (droppedX - 1), engine.Snapshot.SlotsParked + engine.Snapshot.HostStates);   // all but its one stored record were in memory
    }

    [Fact]
    public async Task A_request_that_keeps_no_state_parks_nothing()
    {
        await using var engine = NewEngine();
        var r = await Run(engine, Greedy(Prompt, 6, "resp_a") with { KeepState = false });
        Assert.Equal(6, r.Tokens[0].Count);
        Assert.Equal(0, engine.Snapshot.SlotsParked);
        Assert.Equal(0, (await Run(engine, Greedy(Next(Prompt, r, 1), 2, "resp_b") with { ParentSessionId = "resp_a" })).Usage!.CachedTokens);
    }

    static async Task WaitFor(Func<bool> condition)
    {
        for (int i = 0; i < 600 && !condition(); i++) await Task.Delay(50);
        Assert.True(condition());
    }
}
