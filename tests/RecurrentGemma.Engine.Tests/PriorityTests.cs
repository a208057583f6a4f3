using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>vLLM's priority: waiting requests are admitted lower priority first, equal ones in arrival order.</summary>
public class PriorityTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    /// <summary>When the request's first token came: one runs at a time, 16 steps each, so the
    /// order of first tokens is the order of admission with a wide margin for the thread pool.</summary>
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
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, MaxRunningSequences = 1, ParkFinishedStates = false });
        using var hold = new CancellationTokenSource();
        var running = engine.Submit(Greedy(Prompt, 4000), hold.Token);
        await Until(engine, s => s.RunningSequences == 1);

        // Queued while the one place is taken: (name, priority) in arrival order.
        (string Name, int Priority)[] arrivals = [("a", 0), ("b", 5), ("c", -1), ("d", 0), ("e", -1), ("f", 5)];
        var runs = arrivals.Select(a => FirstToken(engine.Submit(Greedy(Prompt, 16) with { Priority = a.Priority }))).ToList();
        await Until(engine, s => s.QueuedRequests == arrivals.Length);
        hold.Cancel();   // frees the place: one at a time from here
        await Collect(running);
        var firsts = await Task.WhenAll(runs);
        Assert.Equal(["c", "e", "a", "d", "b", "f"], arrivals.Select((a, i) => (a.Name, firsts[i])).OrderBy(x => x.Item2).Select(x => x.Name));
    }

    [Fact]
    public async Task Without_priorities_it_is_first_come_first_served()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, MaxRunningSequences = 1, ParkFinishedStates = false });
        using var hold = new CancellationTokenSource();
        var running = engine.Submit(Greedy(Prompt, 4000), hold.Token);
        await Until(engine, s => s.RunningSequences == 1);
        var runs = Enumerable.Range(0, 5).Select(_ => FirstToken(engine.Submit(Greedy(Prompt, 16)))).ToList();
        await Until(engine, s => s.QueuedRequests == 5);
        hold.Cancel();
        await Collect(running);
        var firsts = await Task.WhenAll(runs);
        Assert.Equal([0, 1, 2, 3, 4], Enumerable.Range(0, 5).OrderBy(i => firsts[i]));
    }
}
