using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>Snapshot arrays are reused by exact length, handed back once only, and the pool is bounded.</summary>
public class SnapshotBuffersTests
{
    [Fact]
    public void A_disposed_snapshots_arrays_are_reused_once_and_exports_round_trip_through_reused_memory()
    {
        var model = GriffinFixture.Get("tiny").LoadModel();
        using var state = model.CreateState(3);
        using (var scope = NewDisposeScope())
            foreach (var t in state.AllTensors()) t.copy_(randn(t.shape, t.dtype));
        var first = state.ExportSlot(1);
        var rows = first.Rows.ToArray();
        first.Dispose();
        first.Dispose();   // a second dispose must not hand the arrays out twice

        // The next export of the same layout gets those arrays back (stale contents overwritten).
        var second = state.ExportSlot(2);
        Assert.Contains(second.Rows, r => rows.Any(old => ReferenceEquals(old, r)));
        Assert.Equal(second.Rows.Count, second.Rows.Distinct().Count());
        var third = state.ExportSlot(1);
        Assert.DoesNotContain(third.Rows, r => second.Rows.Any(s => ReferenceEquals(s, r)));

        // Import writes exactly the exported slot back, into another slot, and nothing else.
        state.ImportSlot(0, second);
        using (var scope = NewDisposeScope())
            foreach (var t in state.AllTensors())
            {
                Assert.True(t[0].eq(t[2]).all().item<bool>());
                Assert.False(t[0].eq(t[1]).all().item<bool>());
            }
        second.Dispose();
        third.Dispose();
    }

    [Fact]
    public void The_pool_keeps_at_most_its_budget()
    {
        long before = SnapshotBuffers.MaxPooledBytes;
        try
        {
            SnapshotBuffers.MaxPooledBytes = SnapshotBuffers.PooledBytes + 1000;
            var a = SnapshotBuffers.Rent(777_001);   // a length no other test uses
            SnapshotBuffers.Return(a);               // over the budget: not kept
            Assert.NotSame(a, SnapshotBuffers.Rent(777_001));
            SnapshotBuffers.MaxPooledBytes = SnapshotBuffers.PooledBytes + 1_000_000;
            var b = SnapshotBuffers.Rent(777_001);
            SnapshotBuffers.Return(b);
            Assert.Same(b, SnapshotBuffers.Rent(777_001));
        }
        finally { SnapshotBuffers.MaxPooledBytes = before; }
    }
}
