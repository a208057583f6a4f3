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
        var state = pool ?? model.CreateState(largest);
        var slots = Enumerable.Range(0, largest).Select(i => (long)i).ToArray();
        try
        {
            return Sweep(model, state, slots, all, kernelRows);
        }
        finally
        {
            if (pool is null) state.Dispose();
            else foreach (var slot in slots) pool.Reset((int)slot);   // clean, as a slot must be before its first sequence
        }
    }

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
            var seen = new List<string>();
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
                seen.Add($"b{batch} {one:F2}/{many:F2} ms");
                buckets.Add(new ThreadTiming(batch, one, many));
                if (one >= many && batch >= kernelRows) break;
            }
            var ci = System.Globalization.CultureInfo.InvariantCulture;
            return new DecodeThreads(all, buckets, $"{DecodeThreads.Summary(buckets.Select(b => (b.Batch, b.OneThread)))} (1 vs {all} threads: {string.Join(", ", seen)})");
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
public sealed record DecodeThreads(int AllThreads, IReadOnlyList<ThreadTiming> Buckets, string Reason)
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
