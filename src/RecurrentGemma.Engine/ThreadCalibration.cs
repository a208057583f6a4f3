using System.Diagnostics;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// Which decode batch sizes run libtorch on one CPU thread rather than all of them, decided by
/// measurement at engine start. On a small model each op is microseconds of work and waking the
/// other cores costs more than it saves (the tiny fixture's decode step: 2.2 ms with 2 threads,
/// 1.2 ms with 1 — docs/benchmarks.md); more rows per step, or a larger model, make libtorch's
/// matmuls worth splitting. Large models are calibrated too: their small-batch projections run on
/// the model's own SIMD kernels split over every core (<see cref="SimdGemv"/>), and libtorch's
/// OpenMP workers, spinning between its ops, take those cores from them (2B bf16 recurrent layer
/// 8.6 vs 6.1 ms; a 2B bf16 step of 16 rows 394 ms on one torch thread, 597 on two, libtorch's own
/// path 503 on two; docs/benchmarks.md). So decode steps at batch 1, 2, 4, … are timed (before
/// the engine allocates its slot pool) with one thread and with all, in alternation (a slow phase
/// of a noisy machine slows both), and each power of two gets its own answer: a near tie at batch 1 must not decide
/// batch 16, where the kernels' margin is large. Up to the most rows the kernels take
/// (<see cref="SimdGemv.RowsTaken"/>: 32 where the CPU has AVX-512, 16 on the AVX2 loops under BatchInvariance)
/// every bucket is timed; beyond, libtorch alone runs, and the first bucket where all threads win
/// ends the sweep (which goes to 16 at most where the kernels take fewer rows). Prefill always uses every thread. Skipped on a GPU.
/// Where the process keeps the kernels' choices in a file (Model:KernelChoices), a plan kept there
/// for this model, path and batch range is taken instead of timing (<see cref="Remember"/>).
/// </summary>
public static class ThreadCalibration
{
    /// <summary>Steps longer than this are timed 3 times instead of 5 (a 2B model: seconds, not tens of them).</summary>
    const double LongStepMs = 20;
    const int LargestBatch = 16;

    /// <summary>The process's intra-op thread count before any engine changed it.</summary>
    public static int AllThreads { get; } = get_num_threads();

    /// <param name="model">The model whose decode steps are timed.</param>
    /// <param name="pool">
    /// An empty state to time in (a benchmark's): the steps run in its first slots, which are reset
    /// afterwards, and no batch larger than it is timed. Null: a scratch state of its own, freed
    /// when done. The engine calibrates before it allocates its slot pool, which then reuses the
    /// scratch's memory; made while a pool was held, the scratch (32 slots of a 2B f32 model:
    /// 1.2 GB) and the kernels' first timings came on top of it (docs/benchmarks.md).
    /// </param>
    /// <param name="maxBatch">The most rows a step can have (the engine's slots): no larger batch is timed.</param>
    public static DecodeThreads Calibrate(GriffinForCausalLM model, GriffinState? pool = null, int maxBatch = int.MaxValue)
    {
        int all = AllThreads;
        if (model.Device.type != TorchSharp.DeviceType.CPU || all <= 1)
            return new DecodeThreads(all, [], "all threads (GPU or one thread: not calibrated)");
        int kernelRows = SimdGemv.RowsTaken;
        int largest = Math.Max(LargestBatch, kernelRows);
        largest = Math.Max(1, Math.Min(largest, Math.Min(maxBatch, pool?.Capacity ?? int.MaxValue)));
        string key = Key(model, largest);
        if (KernelChoices.FilePath is not null && KernelChoices.TryRecall(key, out var kept) && FromEntry(kept, all, largest, key) is { } recalled)
        {
            WarmUp(model);
            return recalled;
        }
        var state = pool ?? model.CreateState(largest);
        var slots = Enumerable.Range(0, largest).Select(i => (long)i).ToArray();
        try
        {
            var plan = Sweep(model, state, slots, all, kernelRows) with { Key = key };
            Remember(key, plan.Buckets, plan.Reason);
            return plan;
        }
        finally
        {
            if (pool is null) state.Dispose();
            else foreach (var slot in slots) pool.Reset((int)slot);   // clean, as a slot must be before its first sequence
        }
    }

    /// <summary>
    /// The name of a calibration in the kernel-choices file: the model's dtype and shape, the
    /// process-wide switches that change a decode step's path, and the largest batch timed (an
    /// engine with fewer slots times fewer sizes). The file's fingerprint holds the machine and build.
    /// </summary>
    public static string Key(GriffinForCausalLM model, int largest)
    {
        var c = model.Config;
        string blocks = string.Concat(c.BlockTypes.Select(b => b == BlockKind.Recurrent ? 'r' : 'a'));
        string shape = FormattableString.Invariant(
            $"d{c.HiddenSize}-m{c.MlpWidth}-r{c.LruWidth}-l{c.NumHiddenLayers}{blocks}-h{c.NumAttentionHeads}x{c.HeadDim}-v{c.VocabSize}-w{c.AttentionWindowSize}");
        string paths = (BatchInvariance.Enabled ? "invariant" : "variant") + (CpuPaths.Enabled ? "" : "-tensor-ops");
        return FormattableString.Invariant($"decode-threads/{KernelChoices.Name(model.DType)}/{shape}/{paths}/b{largest}");
    }

    /// <summary>
    /// Keeps a plan in the kernel-choices file (when the process keeps one): the start-up sweep,
    /// and later what the running engine learned (<see cref="AdaptiveDecodeThreads.Snapshot"/>),
    /// so that the next process on this machine starts from it instead of timing decode steps
    /// again (a 2B model: ~7 s for 8 slots, ~23 s for 64; docs/benchmarks.md). Value: the bucket
    /// count; timings: batch, one-thread ms, all-threads ms per bucket.
    /// </summary>
    public static void Remember(string key, IReadOnlyList<ThreadTiming> buckets, string summary)
    {
        if (KernelChoices.FilePath is null || buckets.Count == 0) return;
        KernelChoices.Record(key, new KernelChoices.Entry(buckets.Count,
            [.. buckets.SelectMany(b => new[] { b.Batch, b.OneThreadMs, b.AllThreadsMs })], summary));
    }

    /// <summary>A kept plan, or null when the entry is not one this engine can use (it is then timed again).</summary>
    static DecodeThreads? FromEntry(KernelChoices.Entry e, int all, int largest, string key)
    {
        var t = e.Timings;
        if (t.Length == 0 || t.Length % 3 != 0 || t.Length / 3 != e.Value) return null;
        var buckets = new List<ThreadTiming>();
        for (int i = 0; i < t.Length; i += 3)
        {
            int batch = (int)t[i];
            if (batch != t[i] || batch < 1 || batch > largest || (buckets.Count > 0 && batch <= buckets[^1].Batch)) return null;
            if (!(t[i + 1] > 0) || !(t[i + 2] > 0) || double.IsInfinity(t[i + 1]) || double.IsInfinity(t[i + 2])) return null;
            buckets.Add(new ThreadTiming(batch, t[i + 1], t[i + 2]));
        }
        return new DecodeThreads(all, buckets,
            $"{DecodeThreads.Summary(buckets.Select(b => (b.Batch, b.OneThread)))} (kept by an earlier process, not timed: 1 vs {all} threads: {Timings(buckets)})", key);
    }

    /// <summary>
    /// One short prompt and one decode step in a scratch slot of its own, where a kept plan
    /// replaced the timed steps: the first request then finds the one-row kernel decisions taken
    /// (read from the file, and in the start-up log) and the step's buffers allocated (without
    /// it a 2B model's first request waited ~0.35 s longer; docs/benchmarks.md).
    /// </summary>
    static void WarmUp(GriffinForCausalLM model)
    {
        using var state = model.CreateState(1);
        long[] slot = [0];
        using (model.Forward([new long[] { 2, 3, 4, 5 }], state, slot)) { }
        using (model.Forward([new long[] { 6 }], state, slot)) { }
    }

    static string Timings(IEnumerable<ThreadTiming> buckets) =>
        string.Join(", ", buckets.Select(b => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"b{b.Batch} {b.OneThreadMs:F2}/{b.AllThreadsMs:F2} ms")));

    static DecodeThreads Sweep(GriffinForCausalLM model, GriffinState state, long[] slots, int all, int kernelRows)
    {
        int largest = slots.Length;
        using (model.Forward(slots.Select(_ => (IReadOnlyList<long>)new long[] { 2, 3, 4, 5 }).ToList(), state, slots)) { }
        // Time sequences whose attention windows are full, the steady state of any long
        // conversation: there attention runs libtorch ops whose spinning workers slow the
        // kernels on two threads, where a short context's few keys take a C# pass (a 2B bf16
        // step on two threads: 111.7 ms at position 100, 164.1 at 4000, stepping in turn).
        // The values do not matter for timing; random ones stand in for a long prefill.
        using (no_grad())
        {
            foreach (var t in state.AllTensors())
                using (var used = t.narrow(0, 0, largest)) used.normal_(0, 0.5);   // the calibration's slots only: the rest of a pool stays untouched
            foreach (var slot in slots) state.SetTokenCount((int)slot, 2L * model.Config.AttentionWindowSize);
        }
        double Step(int threads, int batch)
        {
            set_num_threads(threads);
            var rows = Enumerable.Range(0, batch).Select(i => (IReadOnlyList<long>)new long[] { 6 + i }).ToList();
            var clock = Stopwatch.StartNew();
            using (model.Forward(rows, state, slots[..batch])) { }
            return clock.Elapsed.TotalMilliseconds;
        }
        static double Median(List<double> v) { v.Sort(); return v[v.Count / 2]; }
        try
        {
            int repeats = Step(all, 1) > LongStepMs ? 3 : 5;   // also the warm-up
            var buckets = new List<ThreadTiming>();
            // Powers of two, and the largest batch itself when a small pool ends between two.
            var sizes = new List<int>();
            for (int b = 1; b < largest; b *= 2) sizes.Add(b);
            sizes.Add(largest);
            foreach (int batch in sizes)
            {
                Step(all, batch);   // the first step of a batch size allocates its buffers
                List<double> ones = [], manys = [];
                for (int i = 0; i < repeats; i++)
                {
                    ones.Add(Step(1, batch));
                    manys.Add(Step(all, batch));
                }
                double one = Median(ones), many = Median(manys);
                buckets.Add(new ThreadTiming(batch, one, many));
                if (one >= many && batch >= kernelRows) break;
            }
            return new DecodeThreads(all, buckets, $"{DecodeThreads.Summary(buckets.Select(b => (b.Batch, b.OneThread)))} (1 vs {all} threads: {Timings(buckets)})");
        }
        finally { set_num_threads(all); }
    }
}

/// <summary>One timed batch size: the median decode step with one torch thread and with all.</summary>
public sealed record ThreadTiming(int Batch, double OneThreadMs, double AllThreadsMs)
{
    public bool OneThread => OneThreadMs < AllThreadsMs;
}

/// <summary>
/// The torch thread count for decode steps by batch size, as calibrated: a batch takes the answer
/// of the smallest timed power of two at or above it; larger than every timed one, all threads.
/// (The engine keeps it up to date while it runs: <see cref="AdaptiveDecodeThreads"/>.)
/// </summary>
/// <param name="Key">Its name in the kernel-choices file (<see cref="ThreadCalibration.Key"/>); null when not calibrated.</param>
public sealed record DecodeThreads(int AllThreads, IReadOnlyList<ThreadTiming> Buckets, string Reason, string? Key = null)
{
    public int For(int rows)
    {
        foreach (var b in Buckets)
            if (rows <= b.Batch) return b.OneThread ? 1 : AllThreads;
        return AllThreads;
    }

    /// <summary>"one thread at batch 1/2/16" or "all threads at every batch".</summary>
    public static string Summary(IEnumerable<(int Batch, bool OneThread)> buckets)
    {
        var onOne = buckets.Where(b => b.OneThread).Select(b => b.Batch.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList();
        return onOne.Count == 0 ? "all threads at every batch" : $"one thread at batch {string.Join("/", onOne)}";
    }
}
