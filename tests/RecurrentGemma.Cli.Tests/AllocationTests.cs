using RecurrentGemma.Cli.Bench;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Modules;
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
        Quiesce();
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
        // The tiny fixture's shape with a 32k vocabulary: a row's logits (128 kB) stand well above the heap's noise.
        var config = GriffinConfig.FromFile(Path.Combine(GriffinFixture.Get("tiny").Directory, "config.json")) with { VocabSize = 32000 };
        using var model = new GriffinForCausalLM(config, ScalarType.Float32, CPU);
        RandomWeights.Initialize(model, seed: 1);
        using var state = model.CreateState(4);
        long[] slots = [0, 1, 2, 3];
        using (model.Forward(slots.Select(s => (IReadOnlyList<long>)new long[] { 2, 3 + s }).ToList(), state, slots)) { }

        Allocated Step(int rows)
        {
            Quiesce();
            return ForwardAllocations.Measure(model, () =>
            {
                using var _ = model.Forward(slots[..rows].Select(s => (IReadOnlyList<long>)new long[] { 5 + s }).ToList(), state, slots[..rows]);
            });
        }
        Step(1); Step(4);   // warm-up: first calls may cache
        var one = Step(1);
        var four = Step(4);

        long logitsBytes = (long)config.VocabSize * sizeof(float);
        Assert.True(one.HeapBytes >= logitsBytes, $"one row: {one.HeapBytes} B held at most, its logits alone are {logitsBytes} B");
        Assert.True(four.HeapBytes >= 4 * logitsBytes, $"four rows: {four.HeapBytes} B");
        Assert.True(four.HeapBytes > one.HeapBytes, $"four rows {four.HeapBytes} B vs one row {one.HeapBytes} B");
        Assert.True(one.ManagedBytes > 0, "the forward's own objects (plan, tensor handles) are managed allocations");
        Assert.Null(model.PartDone);   // the measure puts back what was there
    }

    [Fact]
    public void A_kernel_calibration_hands_its_timing_buffers_back()
    {
        // With the heap tuned to keep what it frees (as the server runs), the ~250 MiB of weights a
        // calibration times would otherwise stay resident for the life of the process.
        if (!OperatingSystem.IsLinux() || !MemoryTuning.Apply()) return;
        var measure = typeof(Bf16Upcast).Assembly.GetType("RecurrentGemma.Model.Modules.GemvCalibration")!
            .GetMethod("MeasureGemm", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)!;
        Quiesce();
        MemoryTuning.ReleaseFreeMemory();
        long before = ProcessStats.Memory().Rss;
        measure.Invoke(null, [ScalarType.Float32, 24, false]);
        long after = ProcessStats.Memory().Rss;
        Assert.True(after - before < (32L << 20), $"RSS {before / 1e6:F0} MB before the calibration, {after / 1e6:F0} MB after");
    }

    /// <summary>Tensors earlier tests left to the garbage collector free their native memory on
    /// the finalizer thread: let that happen now, not in the middle of a reading.</summary>
    static void Quiesce()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
