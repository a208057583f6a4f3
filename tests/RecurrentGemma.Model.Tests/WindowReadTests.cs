using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// A batched decode step reads each row's attention window from the ring: in place per run of
/// consecutive slots, or by one gather. Whatever order and spacing the slots come in, every row
/// must equal the same sequence decoded alone — on both paths.
/// </summary>
[Collection(nameof(WindowReadTests))]   // pins a process-wide switch: never alongside the other model tests
[CollectionDefinition(nameof(WindowReadTests), DisableParallelization = true)]
public class WindowReadTests
{
    const double Tol = 2e-4;

    public static IEnumerable<object[]> Cases()
    {
        foreach (var f in GriffinFixture.All())
            foreach (var mode in new[] { WindowReadMode.Auto, WindowReadMode.InPlace, WindowReadMode.Gather, WindowReadMode.Kernel })
                yield return [f[0], mode];
    }

    [Fact]
    public void Slots_split_into_runs_of_consecutive_slots_in_row_order()
    {
        Assert.Equal([new SlotRunView(0, 5, 1)], Runs(5));
        Assert.Equal([new SlotRunView(0, 4, 2), new SlotRunView(2, 1, 3), new SlotRunView(5, 0, 1)], Runs(4, 5, 1, 2, 3, 0));
        Assert.Equal([new SlotRunView(0, 3, 1), new SlotRunView(1, 2, 1), new SlotRunView(2, 1, 1)], Runs(3, 2, 1));   // descending is no run
    }

    [Theory, MemberData(nameof(Cases))]
    public void A_decode_step_over_scattered_slots_equals_each_sequence_alone(string name, WindowReadMode mode)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        int w = fx.Config.AttentionWindowSize;
        // Six rows on slots in an order with runs of 2, 3 and 1, at depths inside and past the window.
        long[] slots = [4, 5, 1, 2, 3, 0];
        int[] depth = [3, w + 2, 1, 7, w, 2];
        using var together = model.CreateState(7);
        using var alone = model.CreateState(7);
        for (int i = 0; i < slots.Length; i++)
        {
            using (model.Forward([seq[..depth[i]]], together, [slots[i]])) { }
            using (model.Forward([seq[..depth[i]]], alone, [slots[i]])) { }
        }
        var next = Enumerable.Range(0, slots.Length).Select(i => (IReadOnlyList<long>)new[] { seq[depth[i]] }).ToList();
        var saved = LocalAttentionBlock.WindowRead;
        try
        {
            LocalAttentionBlock.WindowRead = mode;
            for (int step = 0; step < 2; step++)   // twice: the second step reads what the first wrote
            {
                using var batched = model.Forward(next, together, slots);
                for (int i = 0; i < slots.Length; i++)
                {
                    using var single = model.Forward([next[i]], alone, [slots[i]]);
                    Compare.Close(Compare.Floats(single), Compare.Floats(batched[i]), Tol, $"{name} {mode} step {step} row {i} (slot {slots[i]})");
                }
                next = Enumerable.Range(0, slots.Length).Select(i => (IReadOnlyList<long>)new[] { seq[depth[i] + 1 + step] }).ToList();
            }
        }
        finally { LocalAttentionBlock.WindowRead = saved; }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void The_fused_cpu_pass_equals_the_tensor_path(string name)
    {
        var fx = GriffinFixture.Get(name);
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        int w = fx.Config.AttentionWindowSize;
        long[] slots = [4, 5, 1, 2, 3, 0];
        int[] depth = [3, w + 2, 1, 7, w, 2];   // some rows see part of their window, some all of it
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var model = dtype == ScalarType.Float32 ? fx.LoadModel() : fx.LoadModel("model.bf16.safetensors", dtype);
            var logits = new Dictionary<WindowReadMode, float[][]>();
            var made = new Dictionary<WindowReadMode, long>();
            var saved = LocalAttentionBlock.WindowRead;
            try
            {
                foreach (var mode in new[] { WindowReadMode.Kernel, WindowReadMode.InPlace })
                {
                    using var state = model.CreateState(7);
                    for (int i = 0; i < slots.Length; i++)
                        using (model.Forward([seq[..depth[i]]], state, [slots[i]])) { }
                    LocalAttentionBlock.WindowRead = mode;
                    var rows = new List<float[]>();
                    long before = TensorCount.Created;
                    for (int step = 0; step < 2; step++)   // the second step reads the key the first wrote
                    {
                        var next = Enumerable.Range(0, slots.Length).Select(i => (IReadOnlyList<long>)new[] { seq[depth[i] + step] }).ToList();
                        using var l = model.Forward(next, state, slots);
                        for (int i = 0; i < slots.Length; i++) rows.Add(Compare.Floats(l[i]));
                    }
                    made[mode] = TensorCount.Created - before;
                    logits[mode] = rows.ToArray();
                }
            }
            finally { LocalAttentionBlock.WindowRead = saved; }
            // f32: the same sums in another order. bf16: the fused pass keeps the scores in
            // float32 where the tensor path rounds them to bf16 first.
            double tol = dtype == ScalarType.Float32 ? Tol : 0.25;
            for (int i = 0; i < logits[WindowReadMode.InPlace].Length; i++)
                Compare.Close(logits[WindowReadMode.InPlace][i], logits[WindowReadMode.Kernel][i], tol, $"{name} {dtype} row {i % slots.Length} step {i / slots.Length}");
            Assert.True(made[WindowReadMode.Kernel] < made[WindowReadMode.InPlace], $"the fused pass makes fewer tensors ({made[WindowReadMode.Kernel]} vs {made[WindowReadMode.InPlace]})");
        }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void A_few_rows_split_over_key_ranges_equal_the_tensor_path(string name)
    {
        // One or two rows: each row's keys are cut into ranges whose partial softmaxes are merged.
        // Two keys per range on the fixtures' windows of 6–8, so some ranges see only hidden keys.
        var fx = GriffinFixture.Get(name);
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        int w = fx.Config.AttentionWindowSize;
        var savedMin = DecodeAttention.MinKeysPerSplit;
        var savedMode = LocalAttentionBlock.WindowRead;
        BatchInvariance.Enabled = false;   // ranges by the row count (the guarantee's fixed ranges: BatchInvarianceTests)
        try
        {
            DecodeAttention.MinKeysPerSplit = 2;
            Assert.True(DecodeAttention.Splits(1, w + 1) > 1, $"one row of {w + 1} keys is split ({DecodeAttention.Splits(1, w + 1)})");
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
            {
                using var model = dtype == ScalarType.Float32 ? fx.LoadModel() : fx.LoadModel("model.bf16.safetensors", dtype);
                foreach (var depth in new[] { new[] { 1 }, new[] { w + 2 }, new[] { 3, w } })
                {
                    long[] slots = depth.Select((_, i) => (long)(2 * i + 1)).ToArray();   // not one run
                    var logits = new Dictionary<WindowReadMode, List<float[]>>();
                    foreach (var mode in new[] { WindowReadMode.Kernel, WindowReadMode.InPlace })
                    {
                        LocalAttentionBlock.WindowRead = savedMode;
                        using var state = model.CreateState(2 * depth.Length);
                        for (int i = 0; i < slots.Length; i++)
                            using (model.Forward([seq[..depth[i]]], state, [slots[i]])) { }
                        LocalAttentionBlock.WindowRead = mode;
                        var rows = logits[mode] = [];
                        for (int step = 0; step < 3; step++)   // later steps read the keys the earlier ones wrote
                        {
                            var next = Enumerable.Range(0, slots.Length).Select(i => (IReadOnlyList<long>)new[] { seq[depth[i] + step] }).ToList();
                            using var l = model.Forward(next, state, slots);
                            for (int i = 0; i < slots.Length; i++) rows.Add(Compare.Floats(l[i]));
                        }
                    }
                    double tol = dtype == ScalarType.Float32 ? Tol : 0.25;   // bf16: float32 scores here, bf16 on the tensor path
                    for (int i = 0; i < logits[WindowReadMode.InPlace].Count; i++)
                        Compare.Close(logits[WindowReadMode.InPlace][i], logits[WindowReadMode.Kernel][i], tol,
                            $"{name} {dtype} depths [{string.Join(",", depth)}] row {i % slots.Length} step {i / slots.Length}");
                }
            }
        }
        finally
        {
            DecodeAttention.MinKeysPerSplit = savedMin;
            LocalAttentionBlock.WindowRead = savedMode;
            BatchInvariance.Enabled = true;
        }
    }

    [Fact]
    public void Rows_are_split_only_while_there_are_fewer_than_twice_the_kernel_threads()
    {
        int threads = KernelWorkers.Threads;
        BatchInvariance.Enabled = false;
        try
        {
            Assert.Equal(Math.Min(2 * threads, 2049 / 256), DecodeAttention.Splits(1, 2049));
            Assert.Equal(1, DecodeAttention.Splits(2 * threads, 2049));
            Assert.Equal(1, DecodeAttention.Splits(1, 300));          // one range of ≥ 256 keys
            Assert.Equal(Math.Min(2 * threads, 2), DecodeAttention.Splits(1, 512));
        }
        finally { BatchInvariance.Enabled = true; }
    }

    [Fact]
    public void Under_batch_invariance_a_row_is_cut_by_its_key_count_alone()
    {
        Assert.True(BatchInvariance.Enabled);
        foreach (int rows in new[] { 1, 2, 7, 32 })
        {
            Assert.Equal(4, DecodeAttention.Splits(rows, 2049));   // a 2B window and the new key: ranges of ~512
            Assert.Equal(1, DecodeAttention.Splits(rows, 300));
            Assert.Equal(2, DecodeAttention.Splits(rows, 1024));
        }
    }

    [Fact]
    public void The_fused_pass_is_preferred_below_the_measured_crossover()
    {
        // 4 rows, window 100: the visible ring keys plus each row's new key, against crossover × 4 × 101.
        Assert.True(DecodeAttention.Prefers(visible: 0, rows: 4, window: 100, crossover: 0.1));   // 4 ≤ 40.4
        Assert.True(DecodeAttention.Prefers(198, 4, 100, 0.5));    // 202 ≤ 202
        Assert.False(DecodeAttention.Prefers(199, 4, 100, 0.5));   // 203 > 202
        Assert.False(DecodeAttention.Prefers(400, 4, 100, 0.9));   // full windows
        Assert.True(DecodeAttention.Prefers(400, 4, 100, 1.0));    // ≥ 1: the fused pass wins even there
    }

    [Fact]
    public void The_crossover_is_measured_once_per_shape()
    {
        double first = DecodeAttention.CrossoverFraction(ScalarType.Float32, 4, 16, 8);
        Assert.True(double.IsFinite(first) && first > 0, $"crossover {first}");
        Assert.Equal(first, DecodeAttention.CrossoverFraction(ScalarType.Float32, 4, 16, 8));
    }

    [Fact]
    public void A_plan_counts_the_ring_keys_its_rows_can_see()
    {
        var fx = GriffinFixture.Get(GriffinFixture.All().First()[0].ToString()!);
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        int w = fx.Config.AttentionWindowSize;
        using var model = fx.LoadModel();
        using var state = model.CreateState(3);
        int[] depth = [0, 2, w + 3];
        for (int i = 1; i < depth.Length; i++) using (model.Forward([seq[..depth[i]]], state, [i])) { }
        using var buffer = new StepBuffer(model.Device);
        var plan = model.Plan(buffer, state, [new long[] { 2 }, new long[] { 2 }, new long[] { 2 }], [0, 1, 2]);
        var visible = (long)typeof(ForwardPlan).GetProperty("VisibleRingKeys", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(plan)!;
        Assert.Equal(0 + 2 + w, visible);
    }

    public readonly record struct SlotRunView(int Row, long Slot, int Length);

    static SlotRunView[] Runs(params long[] slots) =>
        RunsOf(slots).Select(r => new SlotRunView(r.Row, r.Slot, r.Length)).ToArray();

    /// <summary>The plan's runs, read from a real plan (the type is internal to the model).</summary>
    static IEnumerable<(int Row, long Slot, int Length)> RunsOf(long[] slots)
    {
        var fx = GriffinFixture.Get(GriffinFixture.All().First()[0].ToString()!);
        using var model = fx.LoadModel();
        using var state = model.CreateState((int)slots.Max() + 1);
        using var buffer = new StepBuffer(model.Device);
        var plan = model.Plan(buffer, state, slots.Select(_ => (IReadOnlyList<long>)new long[] { 2 }).ToList(), slots);
        var runs = (System.Collections.IEnumerable)typeof(ForwardPlan).GetProperty("SlotRuns", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(plan)!;
        foreach (var r in runs)
        {
            var t = r.GetType();
            yield return ((int)t.GetProperty("Row")!.GetValue(r)!, (long)t.GetProperty("Slot")!.GetValue(r)!, (int)t.GetProperty("Length")!.GetValue(r)!);
        }
    }
}
