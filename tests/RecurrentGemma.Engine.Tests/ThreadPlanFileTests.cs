using System.Text.Json.Nodes;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The decode thread plan outlives the process where the kernels' choices are kept in a file: the
/// next engine on the machine takes the plan instead of timing decode steps again (a 2B model's
/// start-up: ~23 s of timing at 64 slots), and what a running engine learned is written back.
/// </summary>
[Collection(nameof(ThreadPlanFileTests))]   // the kernel-choices file is process-wide: never alongside the other engine tests
[CollectionDefinition(nameof(ThreadPlanFileTests), DisableParallelization = true)]
public sealed class ThreadPlanFileTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-threads-" + Guid.NewGuid().ToString("N")[..8]);
    string FilePath => Path.Combine(_dir, "kernel-choices.json");

    public ThreadPlanFileTests()
    {
        KernelChoices.Reset();
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        KernelChoices.Reset();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>As a new process would: forget everything, then read the file.</summary>
    void Restart()
    {
        KernelChoices.Reset();
        KernelChoices.UseFile(FilePath);
    }

    JsonObject Entry(string key) => JsonNode.Parse(File.ReadAllText(FilePath))!["choices"]![key]!.AsObject();

    /// <summary>A file of this machine and build that holds no choice yet.</summary>
    void Blank() => File.WriteAllText(FilePath, new JsonObject { ["fingerprint"] = KernelChoices.Fingerprint(), ["choices"] = new JsonObject() }.ToJsonString());

    void Edit(string key, double value, params double[] timings)
    {
        var root = JsonNode.Parse(File.ReadAllText(FilePath))!.AsObject();
        root["choices"]![key] = new JsonObject { ["value"] = value, ["timings"] = new JsonArray([.. timings.Select(t => (JsonNode)JsonValue.Create(t))]) };
        File.WriteAllText(FilePath, root.ToJsonString());
    }

    /// <summary>A pool whose first slot is marked: a calibration that runs steps overwrites and then resets it.</summary>
    static GriffinStateMark MarkedPool(GriffinForCausalLM model, int slots)
    {
        var pool = model.CreateState(slots);
        using (no_grad())
            foreach (var t in pool.AllTensors()) { using var row = t[0]; row.fill_(0.25); }
        pool.SetTokenCount(0, 77);
        return new GriffinStateMark(pool);
    }

    sealed record GriffinStateMark(GriffinState Pool) : IDisposable
    {
        public bool Untouched => Pool.TokenCount(0) == 77 && Pool.AllTensors().All(t => { using var row = t[0]; return row.eq(0.25).all().item<bool>(); });
        public void Dispose() => Pool.Dispose();
    }

    [Trait("Device", "cpu-only")]   // decode threads are calibrated on the CPU only
    [Fact]
    public void A_calibration_is_kept_and_the_next_process_takes_it_without_running_a_step()
    {
        if (ThreadCalibration.AllThreads <= 1) return;   // one thread: nothing to calibrate
        var model = EngineHarness.FixtureModel();
        KernelChoices.UseFile(FilePath);
        using (var first = MarkedPool(model, 6))
        {
            var timed = ThreadCalibration.Calibrate(model, first.Pool);
            Assert.False(first.Untouched);   // it ran its steps in the pool's slots
            Assert.Equal(ThreadCalibration.Key(model, 6), timed.Key);
            var kept = Entry(timed.Key!);
            Assert.Equal(timed.Buckets.Count, (double)kept["value"]!);
            Assert.Equal(timed.Buckets.SelectMany(b => new[] { b.Batch, Math.Round(b.OneThreadMs, 4), Math.Round(b.AllThreadsMs, 4) }),
                kept["timings"]!.AsArray().Select(t => (double)t!));
        }

        // Timings no machine would measure, one side winning each size in turn: the next process must take exactly these.
        string key = ThreadCalibration.Key(model, 6);
        Edit(key, 4, 1, 0.5, 8.5, 2, 9.25, 0.75, 4, 0.125, 16, 6, 30, 3);
        Restart();
        using var second = MarkedPool(model, 6);
        var recalled = ThreadCalibration.Calibrate(model, second.Pool);
        Assert.True(second.Untouched, "the kept plan was timed again");
        Assert.Equal(new ThreadTiming[] { new(1, 0.5, 8.5), new(2, 9.25, 0.75), new(4, 0.125, 16), new(6, 30, 3) }, recalled.Buckets);
        Assert.Contains("kept by an earlier process", recalled.Reason);
        Assert.Contains("b1 0.50/8.50 ms", recalled.Reason);
        Assert.Equal(1, recalled.For(1));
        Assert.Equal(ThreadCalibration.AllThreads, recalled.For(2));
        Assert.Equal(1, recalled.For(3));
        Assert.Equal(ThreadCalibration.AllThreads, recalled.For(5));
    }

    [Trait("Device", "cpu-only")]
    [Theory]
    [InlineData(5, new double[] { 1, 0.5, 8.5, 2, 9.25, 0.75, 4, 0.125, 16, 6, 30, 3 })]   // the sizes do not match the value
    [InlineData(3, new double[] { 1, 0.5, 8.5, 2, 9.25, 0.75, 9, 0.125, 16 })]            // a batch larger than the engine runs
    [InlineData(2, new double[] { 2, 0.5, 8.5, 1, 9.25, 0.75 })]                           // out of order
    [InlineData(1, new double[] { 1, -1, 8.5 })]                                           // no time at all
    [InlineData(0, new double[0])]
    public void A_kept_plan_the_engine_cannot_use_is_timed_again_and_replaced(int value, double[] timings)
    {
        if (ThreadCalibration.AllThreads <= 1) return;
        var model = EngineHarness.FixtureModel();
        KernelChoices.UseFile(FilePath);
        string key = ThreadCalibration.Key(model, 6);
        Blank();
        Edit(key, value, timings);
        Restart();
        using var pool = MarkedPool(model, 6);
        var plan = ThreadCalibration.Calibrate(model, pool.Pool);
        Assert.False(pool.Untouched);
        Assert.DoesNotContain("kept by", plan.Reason);
        Assert.Equal([1, 2, 4, 6], plan.Buckets.Select(b => b.Batch));
        Assert.Equal(plan.Buckets.Count, (double)Entry(key)["value"]!);
    }

    [Trait("Device", "cpu-only")]
    [Fact]
    public void Another_batch_range_or_path_is_its_own_plan()
    {
        if (ThreadCalibration.AllThreads <= 1) return;
        var model = EngineHarness.FixtureModel();
        KernelChoices.UseFile(FilePath);
        Assert.NotEqual(ThreadCalibration.Key(model, 6), ThreadCalibration.Key(model, 4));
        ThreadCalibration.Calibrate(model, maxBatch: 6);
        Restart();
        Assert.Contains("kept by", ThreadCalibration.Calibrate(model, maxBatch: 6).Reason);
        Assert.DoesNotContain("kept by", ThreadCalibration.Calibrate(model, maxBatch: 4).Reason);
        bool saved = BatchInvariance.Enabled;
        try
        {
            string before = ThreadCalibration.Key(model, 6);
            BatchInvariance.Enabled = !saved;
            Assert.NotEqual(before, ThreadCalibration.Key(model, 6));
        }
        finally { BatchInvariance.Enabled = saved; }
        // Without a file nothing is kept or read: every calibration times.
        KernelChoices.Reset();
        Assert.DoesNotContain("kept by", ThreadCalibration.Calibrate(model, maxBatch: 6).Reason);
    }

    [Trait("Device", "cpu-only")]
    [Fact]
    public async Task A_running_engine_writes_back_what_it_learned_and_the_next_engine_starts_from_it()
    {
        if (ThreadCalibration.AllThreads <= 1) return;
        var model = EngineHarness.FixtureModel();
        KernelChoices.UseFile(FilePath);
        string key = ThreadCalibration.Key(model, 4);
        // Calibrated slow on both sides (seconds per step): a running engine's steps take well under that.
        Blank();
        Edit(key, 3, 1, 5000, 6000, 2, 5000, 6000, 4, 5000, 6000);
        Restart();
        await using (var engine = new EngineClient(model, new EngineOptions { MaxSlots = 4 }))
        {
            Assert.Contains("kept by an earlier process", engine.ThreadChoice);
            var result = await EngineHarness.Run(engine, EngineHarness.Greedy([2, 10, 11, 12], maxNew: 40));
            Assert.Null(result.Error);
        }
        var kept = Entry(key);
        Assert.StartsWith("learned while running", (string?)kept["summary"]);
        var t = kept["timings"]!.AsArray().Select(x => (double)x!).ToArray();
        Assert.Equal([1, 2, 4], new[] { t[0], t[3], t[6] });
        // Batch 1 ran ~40 steps, nearly all on its chosen side (one thread: 5000 < 6000 seeded): that
        // side's median is now the running engine's milliseconds, far under the seed.
        Assert.True(t[1] < 1000, string.Join(", ", t));
        Assert.Equal(5000, t[4]);   // batch 2 never ran: the seed stays
        Restart();
        var next = ThreadCalibration.Calibrate(model, maxBatch: 4);
        Assert.Contains("kept by an earlier process", next.Reason);
        Assert.Equal(t[1], next.Buckets[0].OneThreadMs, 4);
    }

    [Fact]
    public void A_snapshot_is_the_running_medians_at_each_buckets_batch()
    {
        var t = new AdaptiveDecodeThreads(new DecodeThreads(2, [new(1, 10, 20), new(4, 40, 20)], "test"));
        Assert.Equal(new ThreadTiming[] { new(1, 10, 20), new(4, 40, 20) }, t.Snapshot());
        for (int i = 0; i < AdaptiveDecodeThreads.Window; i++) t.Record(3, 1, 3 * 2.5);   // 2.5 ms per row on one thread
        var s = t.Snapshot();
        Assert.Equal(4 * 2.5, s[1].OneThreadMs, 9);
        Assert.Equal(20, s[1].AllThreadsMs, 9);
        Assert.Equal(AdaptiveDecodeThreads.Window, t.Recorded);
    }
}
