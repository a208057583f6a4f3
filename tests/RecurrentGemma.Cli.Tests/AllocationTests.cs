using RecurrentGemma.Cli.Bench;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using RecurrentGemma.Model.Tests;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Tests;

/// <summary>Heap readings are process-wide: these tests run while no other test class does.</summary>
[CollectionDefinition(nameof(AllocationTests), DisableParallelization = true)]
public sealed class AllocationTestsCollection;

/// <summary>The benchmark's "allocated per step" figures: the C heap reading and the per-forward measure.</summary>
[Collection(nameof(AllocationTests))]
public class AllocationTests
{
    [Fact]
    public void The_heap_reading_sees_a_tensor_come_and_go()
    {
        if (!OperatingSystem.IsLinux()) return;
        using (var warm = ones(16)) { }   // libtorch's own start-up allocations come first
        long before = ProcessStats.HeapInUse();
        Assert.True(before > 0, "mallinfo2 unreadable");
        const long bytes = 64L << 20;
        long during;
        using (var t = empty(bytes / 4, ScalarType.Float32))
            during = ProcessStats.HeapInUse();
        long after = ProcessStats.HeapInUse();
        Assert.InRange(during - before, bytes, bytes + (8 << 20));   // other threads may allocate a little meanwhile
        Assert.InRange(during - after, bytes - (8 << 20), bytes + (8 << 20));
    }

    [Fact]
    public void A_forward_allocates_at_least_its_logits_and_more_for_more_rows()
    {
        if (!OperatingSystem.IsLinux()) return;
        var fx = GriffinFixture.Get("tiny");
        using var model = CheckpointLoader.Load(fx.Directory, new ModelLoadOptions());
        using var state = model.CreateState(4);
        long[] slots = [0, 1, 2, 3];
        using (model.Forward(slots.Select(s => (IReadOnlyList<long>)new long[] { 2, 3 + s }).ToList(), state, slots)) { }

        Allocated Step(int rows) => ForwardAllocations.Measure(model, () =>
        {
            using var _ = model.Forward(slots[..rows].Select(s => (IReadOnlyList<long>)new long[] { 5 + s }).ToList(), state, slots[..rows]);
        });
        Step(1); Step(4);   // warm-up: first calls may cache
        var one = Step(1);
        var four = Step(4);

        long logitsBytes = (long)fx.Config.VocabSize * sizeof(float);
        Assert.True(one.HeapBytes >= logitsBytes, $"one row: {one.HeapBytes} B held at the head mark, its logits alone are {logitsBytes} B");
        Assert.True(four.HeapBytes >= 4 * logitsBytes, $"four rows: {four.HeapBytes} B");
        Assert.True(four.HeapBytes > one.HeapBytes, $"four rows {four.HeapBytes} B vs one row {one.HeapBytes} B");
        Assert.True(one.ManagedBytes > 0, "the forward's own objects (plan, tensor handles) are managed allocations");
        Assert.Null(model.PartDone);   // the measure puts back what was there
    }
}
