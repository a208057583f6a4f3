using System.Diagnostics;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// How many CPU threads a decode step should use, decided by measurement at engine start. On a
/// small model each op is microseconds of work and waking the other cores costs more than it
/// saves (the tiny fixture's decode step: 2.2 ms with 2 threads, 1.2 ms with 1 — docs/benchmarks.md);
/// on a large one the matmuls need every core. So the engine times a few batch-1 decode steps
/// on a scratch state with one thread and with all, and keeps the faster for decode; prefill
/// always uses every thread. Skipped (all threads) on a GPU, or when a step is so long that
/// dispatch cannot matter.
/// </summary>
internal static class ThreadCalibration
{
    /// <summary>Decode steps longer than this are dominated by compute: no calibration.</summary>
    const double DispatchBoundMs = 20;

    /// <summary>The process's intra-op thread count before any engine changed it.</summary>
    public static int AllThreads { get; } = get_num_threads();

    public static int DecodeThreads(GriffinForCausalLM model, out string reason)
    {
        int all = AllThreads;
        if (model.Device.type != TorchSharp.DeviceType.CPU || all <= 1) { reason = "not calibrated (GPU or one thread)"; return all; }
        using var state = model.CreateState(1);
        using (model.Forward([[2L, 3, 4, 5]], state, [0])) { }
        double Time(int threads)
        {
            set_num_threads(threads);
            var times = new List<double>();
            for (int i = 0; i < 5; i++)
            {
                var clock = Stopwatch.StartNew();
                using (model.Forward([[(long)(6 + i)]], state, [0])) { }
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            return times[2];
        }
        try
        {
            double many = Time(all);
            if (many > DispatchBoundMs) { reason = $"{all} threads (a decode step takes {many:F0} ms: compute-bound)"; return all; }
            double one = Time(1);
            many = Math.Min(many, Time(all));
            reason = $"decode step {one:F2} ms with 1 thread vs {many:F2} ms with {all}";
            return one < many ? 1 : all;
        }
        finally { set_num_threads(all); }
    }
}
