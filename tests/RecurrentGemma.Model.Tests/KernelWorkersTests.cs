using System.Collections.Concurrent;
using RecurrentGemma.Model.Modules;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The kernels' worker threads: every part of a call runs exactly once, whoever claims it; calls
/// from several threads at once, a failing part and workers that went to sleep between calls are
/// all handled; and on a machine with more than one core the workers really take parts.
/// </summary>
[Collection(nameof(KernelWorkersTests))]   // changes the process-wide spin time
[CollectionDefinition(nameof(KernelWorkersTests), DisableParallelization = true)]
public class KernelWorkersTests
{
    static void Busy(double microseconds)
    {
        long end = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(microseconds * System.Diagnostics.Stopwatch.Frequency / 1e6);
        while (System.Diagnostics.Stopwatch.GetTimestamp() < end) { }
    }

    [Fact]
    public void Every_part_of_every_call_runs_exactly_once_and_workers_take_some()
    {
        int caller = Environment.CurrentManagedThreadId;
        int byOthers = 0;
        for (int call = 0; call < 300; call++)
        {
            int parts = 1 + call % 37;
            var counts = new int[parts];
            KernelWorkers.Run(parts, p =>
            {
                Interlocked.Increment(ref counts[p]);
                if (Environment.CurrentManagedThreadId != caller) Interlocked.Increment(ref byOthers);
                Busy(20);
            });
            Assert.All(counts, c => Assert.Equal(1, c));
        }
        if (Environment.ProcessorCount > 1) Assert.True(byOthers > 0, "no part ran on a worker thread");
    }

    [Fact]
    public void Calls_from_several_threads_at_once_each_run_all_their_parts()
    {
        var failures = new ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            for (int call = 0; call < 200; call++)
            {
                var counts = new int[16];
                KernelWorkers.Run(counts.Length, p => { Interlocked.Increment(ref counts[p]); Busy(2); });
                if (counts.Any(c => c != 1)) failures.Add($"thread {t} call {call}: {string.Join(",", counts)}");
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(failures);
    }

    [Fact]
    public void A_failing_part_fails_its_call_and_the_next_call_works()
    {
        var ex = Record.Exception(() => KernelWorkers.Run(8, p => { if (p == 5) throw new InvalidOperationException("part 5"); }));
        Assert.NotNull(ex);
        Assert.Contains("part 5", ex is AggregateException a ? a.InnerException!.Message : ex.Message);
        var counts = new int[8];
        KernelWorkers.Run(8, p => Interlocked.Increment(ref counts[p]));
        Assert.All(counts, c => Assert.Equal(1, c));
    }

    [Fact]
    public void Workers_that_went_to_sleep_wake_for_the_next_call()
    {
        double spin = KernelWorkers.SpinMicroseconds;
        KernelWorkers.SpinMicroseconds = 10;
        try
        {
            int caller = Environment.CurrentManagedThreadId, byOthers = 0;
            for (int call = 0; call < 20; call++)
            {
                Thread.Sleep(20);   // far past the spin time: the workers are asleep
                var counts = new int[8];
                KernelWorkers.Run(8, p =>
                {
                    Interlocked.Increment(ref counts[p]);
                    if (Environment.CurrentManagedThreadId != caller) Interlocked.Increment(ref byOthers);
                    Busy(500);
                });
                Assert.All(counts, c => Assert.Equal(1, c));
            }
            if (Environment.ProcessorCount > 1) Assert.True(byOthers > 0, "no sleeping worker woke to take a part");
        }
        finally { KernelWorkers.SpinMicroseconds = spin; }
    }
}
