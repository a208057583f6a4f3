using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>vLLM's priority: waiting requests are admitted lower priority first, equal ones in arrival order.</summary>
public class PriorityTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    /// <summary>
    /// Queues requests of these priorities (in this order) behind one that holds the only running
    /// place, frees the place, and returns their indices in the order they were admitted. One
    /// runs at a time, 16 steps each, so the order of first tokens is the order of admission with
    /// a wide margin for the thread pool.
    /// </summary>
    static async Task<int[]> AdmissionOrder(params int[] priorities)
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, MaxRunningSequences = 1, ParkFinishedStates = false });
        using var hold = new CancellationTokenSource();
        var running = engine.Submit(Greedy(Prompt, 4000), hold.Token);
        await Until(engine, s => s.RunningSequences == 1);
        var runs = priorities.Select(p => FirstToken(engine.Submit(Greedy(Prompt, 16) with { Priority = p }))).ToList();
        await Until(engine, s => s.QueuedRequests == priorities.Length);
        hold.Cancel();   // frees the place: one at a time from here
        await Collect(running);
        var firsts = await Task.WhenAll(runs);
        return [.. Enumerable.Range(0, priorities.Length).OrderBy(i => firsts[i])];
    }

    static async Task<long> FirstToken(RequestHandle handle)
    {
        long first = 0;
        await foreach (var e in handle.ReadEventsAsync())
            if (e is TokenEvent && first == 0) first = System.Diagnostics.Stopwatch.GetTimestamp();
        return first;
    }

    [Fact]
    public async Task Waiting_requests_are_admitted_by_priority_then_arrival()
    {
        // a: 0, b: 5, c: -1, d: 0, e: -1, f: 5 → c, e, a, d, b, f
        var order = await AdmissionOrder(0, 5, -1, 0, -1, 5);
        Assert.Equal([2, 4, 0, 3, 1, 5], order);
    }

    [Fact]
    public async Task Without_priorities_it_is_first_come_first_served()
    {
        var order = await AdmissionOrder(0, 0, 0, 0, 0);
        Assert.Equal([0, 1, 2, 3, 4], order);
    }
}
