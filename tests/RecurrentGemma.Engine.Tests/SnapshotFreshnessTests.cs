using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The snapshot is what callers (tests, the metrics) read: once a request's events
/// have ended, or a drop's task has completed, it already shows the state parked or gone — the
/// engine publishes before it signals, not only at the end of its step.
/// </summary>
public sealed class SnapshotFreshnessTests
{
    [Fact]
    public async Task A_caller_sees_its_state_parked_as_its_request_ends_and_gone_as_its_drop_completes()
    {
        int[] prompt = Ids("tiny", "d", "prompt");
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 48, MaxRunningSequences = 1, SnapshotAtPromptEnd = false });
        const int n = 20;   // before the fix this failed in about one run of three
        for (int i = 0; i < n; i++)
        {
            await Run(engine, Greedy([.. prompt, 3 + i], 2, $"s{i}"));
            var now = engine.Snapshot;
            Assert.Equal(0, now.RunningSequences);
            Assert.Equal(i + 1, now.SlotsParked);
        }
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(1, await engine.DropSessionAsync($"s{i}", null));
            Assert.Equal(n - 1 - i, engine.Snapshot.SlotsParked);
        }
    }
}
