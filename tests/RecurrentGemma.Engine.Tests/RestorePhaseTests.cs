using System.Diagnostics.Metrics;
using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The restoring phase: a stored state is read back on the thread pool before its request joins
/// the queue. Its latency is measured per tier; a request cancelled while restoring ends at once
/// and leaves nothing behind.
/// </summary>
public sealed class RestorePhaseTests : IDisposable
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-restore-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    EngineClient Engine()
    {
        var engine = NewEngine(new EngineOptions { MaxSlots = 4, StorePath = _dir, SnapshotAtPromptEnd = false });
        engine.Disk!.Scanned.Wait(TimeSpan.FromSeconds(30));
        return engine;
    }

    async Task<int[]> StoredConversation()
    {
        await using var a = Engine();
        var first = await Run(a, Greedy(Prompt, 4, "chat"));
        return [.. Prompt, .. first.Tokens[0], 77, 78];
    }

    [Fact]
    public async Task A_restore_from_disk_is_timed_under_its_tier()
    {
        var next = await StoredConversation();
        var seen = new List<(double Seconds, string? Tier)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Name == EngineMetrics.MeterName && i.Name == "rgemma.engine.state_restore_duration") l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            lock (seen) seen.Add((value, tags.ToArray().FirstOrDefault(t => t.Key == "tier").Value as string));
        });
        listener.Start();

        await using var b = Engine();
        var resumed = await Run(b, Greedy(next, 3, "chat"));
        Assert.True(resumed.Usage!.CachedTokens > 0);
        lock (seen) Assert.Contains(seen, s => s.Tier == "disk" && s.Seconds > 0);
    }

    [Fact]
    public async Task A_request_cancelled_while_its_state_is_restoring_ends_and_leaves_nothing()
    {
        var next = await StoredConversation();
        await using var b = Engine();
        for (int i = 0; i < 20; i++)
        {
            var handle = b.Submit(Greedy(next, 50, "chat"));
            handle.Cancel();   // at once: usually while the record is still being read
            var result = await Collect(handle);
            Assert.Null(result.Error);
        }
        // Nothing queued, nothing running, no slot held; the engine still answers.
        for (int i = 0; i < 200 && (b.Snapshot.RunningSequences > 0 || b.Metrics.QueuedCount > 0); i++) await Task.Delay(25);
        Assert.Equal(0, b.Snapshot.RunningSequences);
        Assert.Equal(0, b.Metrics.QueuedCount);
        Assert.Equal(0, b.Snapshot.SlotsUsed);
        Assert.Equal(3, (await Run(b, Greedy(Prompt, 3))).Tokens[0].Count);
    }
}
