using RecurrentGemma.Model;

namespace RecurrentGemma.Engine.Tests;

/// <summary>Ten thousand conversations through a two-slot pool, host memory and the disk tier.</summary>
public sealed class TierScaleTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-scale-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task Ten_thousand_sessions_keep_every_tier_within_its_bounds_and_leak_nothing()
    {
        var model = EngineHarness.FixtureModel();
        long perState = GriffinState.BytesPerSequence(model.Config, model.DType);
        var layout = GriffinState.SlotLayout(model.Config, model.DType);
        long liveBefore = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        int files;
        long dropped;
        using (var disk = new PersistentTier(new FileStateBackend(_dir), "fp", layout, capacity: 500))
        using (var store = new StateStore(model, 2, maxParkedPerOwner: 0, hostBytes: 8 * perState, disk))
        {
            for (int i = 0; i < 10_000; i++)
            {
                var slot = store.TryAcquire()!.Value;
                store.Park(slot, [2, 10 + i % 1000, 20 + i / 1000, 7], $"s{i}", $"o{i % 50}");
            }
            var (count, bytes, demotions, _) = store.HostTierStats;
            Assert.True(count <= 8 && bytes <= 8 * perState, $"host tier {count} states, {bytes} bytes");
            Assert.Equal(9_998, demotions);   // every park beyond the two slots pushed one state down
            Assert.Equal(2, store.ParkedCount);
            Assert.NotNull(store.FindMatch([2, 10 + 999, 20 + 9, 7, 5], "s9999", "o49"));   // the newest is still on the device
            dropped = disk.Dropped;
        }   // disposing the store writes the parked states out and waits for the writer
        Assert.Equal(liveBefore, TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount);   // host states are bytes, not tensors
        files = Directory.GetFiles(_dir, "*.state").Length;
        Assert.InRange(files, 1, 500);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));

        // A server started on the directory finds a recent conversation among them (its own
        // owner's and session's records only) and restores it; an old one fell to the capacity.
        using var reopened = new PersistentTier(new FileStateBackend(_dir), "fp", layout, capacity: 500);
        await reopened.Scanned.WaitAsync(TimeSpan.FromSeconds(60));
        var recent = reopened.FindMatch([2, 10 + 990, 20 + 9, 7, 5], "s9990", "o40");
        Assert.NotNull(recent);
        using (var entry = reopened.Load(recent!)) Assert.Equal(perState, entry!.Snapshot.Bytes);
        // When the writer kept up with all 10 000 writes, the oldest fell to the capacity. (A writer
        // that fell behind drops records instead — by design — and then an old one may be among
        // the last 500 written, so the check only applies to a run that dropped nothing.)
        if (dropped == 0) Assert.Null(reopened.FindMatch([2, 10 + 5, 20 + 0, 7, 5], "s5", "o5"));
    }
}
