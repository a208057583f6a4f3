using System.Diagnostics;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// Up to which decode batch size one CPU thread beats all of them, decided by measurement at
/// engine start. On a small model each op is microseconds of work and waking the other cores
/// costs more than it saves (the tiny fixture's decode step: 2.2 ms with 2 threads, 1.2 ms with
/// 1 — docs/benchmarks.md); more rows per step, or a larger model, make the matmuls worth
/// splitting. So the engine times decode steps at batch 1, 2, 4, … 16 (32 in bf16 where the
/// model's own dot-product kernel takes that many rows, SimdGemv.RowsSupportedFor) on a scratch
/// state with one thread and with all (in alternation, so that a slow phase of a noisy machine
/// slows both), and stops at the first batch where all threads win. With that kernel a 2B bf16
/// step of 16 rows took 394 ms on one torch thread and 597 on two, against libtorch's 503 on two
/// (docs/benchmarks.md). Prefill always uses every thread. Large models are calibrated too: their
/// batch-1 projections run on the model's own SIMD kernel split over every core
/// (<see cref="RecurrentGemma.Model.Modules.SimdGemv"/>), and libtorch's OpenMP workers, spinning
/// between its ops, take those cores from it (2B bf16 recurrent layer 8.6 vs 6.1 ms,
/// docs/benchmarks.md). Skipped on a GPU.
/// </summary>
public static class ThreadCalibration
{
    /// <summary>Steps longer than this are timed 3 times instead of 5 (a 2B model: seconds, not tens of them).</summary>
    const double LongStepMs = 20;
    const int LargestBatch = 16;

    /// <summary>The process's intra-op thread count before any engine changed it.</summary>
    public static int AllThreads { get; } = get_num_threads();

    /// <returns>the largest decode batch to run on one thread (0: always all threads).</returns>
    public static int SingleThreadUpTo(GriffinForCausalLM model, out string reason)
    {
        int all = AllThreads;
        if (model.Device.type != TorchSharp.DeviceType.CPU || all <= 1) { reason = "all threads (GPU or one thread: not calibrated)"; return 0; }
        int largest = Math.Max(LargestBatch, RecurrentGemma.Model.Modules.SimdGemv.RowsSupportedFor(model.DType));
        using var state = model.CreateState(largest);
        var slots = Enumerable.Range(0, largest).Select(i => (long)i).ToArray();
        using (model.Forward(slots.Select(_ => (IReadOnlyList<long>)new long[] { 2, 3, 4, 5 }).ToList(), state, slots)) { }
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
            int upTo = 0;
            var seen = new List<string>();
            for (int batch = 1; batch <= largest; batch *= 2)
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
                if (one >= many) break;
                upTo = batch;
            }
            reason = $"one thread up to batch {upTo} (1 vs {all} threads: {string.Join(", ", seen)})";
            return upTo;
        }
        finally { set_num_threads(all); }
    }
}
