using RecurrentGemma.Model.Modules;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The decode thread plan: each timed power of two answers for the batches up to it, larger
/// batches take every thread, and the sweep covers every batch size the model's own kernels take
/// (a near tie at batch 1 must not decide batch 16).
/// </summary>
public class ThreadCalibrationTests
{
    [Fact]
    public void A_batch_takes_the_answer_of_the_smallest_timed_power_of_two_at_or_above_it()
    {
        var plan = new DecodeThreads(4, [new(1, 11, 10), new(2, 10, 11), new(4, 10, 11), new(8, 11, 10), new(16, 10, 11)], "test");
        Assert.Equal(4, plan.For(1));
        Assert.Equal(1, plan.For(2));
        Assert.Equal(1, plan.For(3));
        Assert.Equal(1, plan.For(4));
        Assert.Equal(4, plan.For(5));
        Assert.Equal(4, plan.For(8));
        Assert.Equal(1, plan.For(9));
        Assert.Equal(1, plan.For(16));
        Assert.Equal(4, plan.For(17));   // beyond the sweep: libtorch's GEMM on every thread
        Assert.Equal(4, new DecodeThreads(4, [], "none").For(1));
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public void The_sweep_times_every_batch_size_the_kernels_take_and_powers_of_two_only()
    {
        var plan = ThreadCalibration.Calibrate(EngineHarness.FixtureModel());
        if (ThreadCalibration.AllThreads <= 1)
        {
            Assert.Empty(plan.Buckets);
            Assert.Contains("not calibrated", plan.Reason);
            return;
        }
        var batches = plan.Buckets.Select(b => b.Batch).ToList();
        Assert.Equal(Enumerable.Range(0, batches.Count).Select(i => 1 << i), batches);
        int kernelRows = SimdGemv.RowsSupported;
        Assert.True(batches[^1] >= Math.Min(kernelRows, 16), $"swept to {batches[^1]}; the kernels take {kernelRows} rows");
        Assert.True(batches[^1] <= Math.Max(16, kernelRows));
        // Past the kernels' rows the sweep ends at the first bucket where every thread won.
        foreach (var b in plan.Buckets.Take(plan.Buckets.Count - 1))
            Assert.True(b.Batch < kernelRows || b.OneThread, $"the sweep went on past batch {b.Batch}, where all threads won");
        foreach (var b in plan.Buckets)
        {
            Assert.True(b.OneThreadMs > 0 && b.AllThreadsMs > 0);
            Assert.Equal(b.OneThread ? 1 : ThreadCalibration.AllThreads, plan.For(b.Batch));
        }
        Assert.Contains("1 vs", plan.Reason);
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public void In_a_small_pool_the_sweep_ends_at_the_pool_and_leaves_every_slot_clean()
    {
        var model = EngineHarness.FixtureModel();
        using var pool = model.CreateState(12);
        var plan = ThreadCalibration.Calibrate(model, pool);
        if (ThreadCalibration.AllThreads <= 1) { Assert.Empty(plan.Buckets); return; }
        // No batch larger than the pool can run, so none is timed; 12 itself is (it is not a power of two).
        Assert.Equal([1, 2, 4, 8, 12], plan.Buckets.Select(b => b.Batch));
        for (int slot = 0; slot < 12; slot++) Assert.Equal(0, pool.TokenCount(slot));
        foreach (var t in pool.AllTensors()) Assert.Equal(0, t.abs().sum().item<float>());
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public void No_batch_larger_than_the_engine_can_run_is_timed()
    {
        var plan = ThreadCalibration.Calibrate(EngineHarness.FixtureModel(), maxBatch: 6);
        if (ThreadCalibration.AllThreads <= 1) { Assert.Empty(plan.Buckets); return; }
        Assert.Equal([1, 2, 4, 6], plan.Buckets.Select(b => b.Batch));
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public void In_a_given_state_the_calibration_uses_only_the_slots_it_times()
    {
        var model = EngineHarness.FixtureModel();
        int largest = Math.Max(16, SimdGemv.RowsTaken);
        using var pool = model.CreateState(largest + 3);
        int marked = largest + 2;
        using (TorchSharp.torch.no_grad())
            foreach (var t in pool.AllTensors()) { using var row = t[marked]; row.fill_(0.25); }
        pool.SetTokenCount(marked, 77);
        var plan = ThreadCalibration.Calibrate(model, pool);
        if (ThreadCalibration.AllThreads > 1) Assert.NotEmpty(plan.Buckets);
        Assert.Equal(77, pool.TokenCount(marked));
        foreach (var t in pool.AllTensors())
        {
            using var row = t[marked];
            Assert.True(row.eq(0.25).all().item<bool>(), "a slot past the calibration's was written");
            using var used = t.narrow(0, 0, largest);
            Assert.Equal(0, used.abs().sum().item<float>());
        }
        for (int slot = 0; slot < largest; slot++) Assert.Equal(0, pool.TokenCount(slot));
    }

    /// <summary>Feeds the chooser steps that take <paramref name="oneMs"/> / <paramref name="allMs"/> per row on each side.</summary>
    static (int OnOne, int OnAll) Run(AdaptiveDecodeThreads t, int rows, int steps, double oneMs, double allMs)
    {
        int onOne = 0, onAll = 0;
        for (int s = 0; s < steps; s++)
        {
            int threads = t.Choose(rows);
            if (threads == 1) onOne++; else onAll++;
            t.Record(rows, threads, rows * (threads == 1 ? oneMs : allMs));
        }
        return (onOne, onAll);
    }

    [Fact]
    public void The_engine_follows_the_faster_side_while_it_runs_and_looks_at_the_other_now_and_then()
    {
        // Calibrated in a slow phase: all threads looked faster at batch 16 (1151 vs 902 ms).
        var t = new AdaptiveDecodeThreads(new DecodeThreads(2, [new(1, 100, 98), new(16, 1151, 902)], "test"));
        Assert.Equal(2, t.Choose(16));
        // Running, one thread is faster (394 vs 597 ms per 16 rows): the exploration steps find it and the bucket switches.
        var (onOne, onAll) = Run(t, 16, 400, 394.0 / 16, 597.0 / 16);
        Assert.True(onOne > 300, $"{onOne} steps on one thread, {onAll} on all");
        Assert.True(onAll >= 400 / AdaptiveDecodeThreads.ExploreEvery - 4, "the other side is still looked at now and then");
        Assert.True(t.Switches >= 1);
        Assert.Contains("one thread at batch 16", t.Describe());
        // Batch 9 shares bucket 16; batch 1 keeps its own answer (all threads).
        Assert.Equal(2, t.Choose(1));
        // The phase changes: one thread becomes the slower side; the bucket switches back.
        (onOne, onAll) = Run(t, 12, 400, 700.0 / 16, 500.0 / 16);
        Assert.True(onAll > 300, $"{onOne} steps on one thread, {onAll} on all");
        Assert.DoesNotContain("batch 16", t.Describe());
        // Beyond the timed batches: every thread, nothing recorded.
        Assert.Equal(2, t.Choose(17));
        t.Record(17, 1, 1);
    }

    [Fact]
    public void A_steady_machine_keeps_the_calibrated_choice()
    {
        var t = new AdaptiveDecodeThreads(new DecodeThreads(2, [new(1, 9, 10), new(2, 24, 22)], "test"));
        var (onOne, _) = Run(t, 1, 320, 9, 10);
        Assert.Equal(320 - 320 / AdaptiveDecodeThreads.ExploreEvery, onOne);
        var (_, onAll) = Run(t, 2, 320, 12, 11);   // per row: the calibration's 24 and 22 ms per step of two
        Assert.Equal(320 - 320 / AdaptiveDecodeThreads.ExploreEvery, onAll);
        Assert.Equal(0, t.Switches);
    }
}
