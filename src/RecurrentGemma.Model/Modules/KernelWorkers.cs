using System.Diagnostics;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Runs the parts of one CPU kernel call (<see cref="SimdGemv"/>, <see cref="RecurrentStepRows"/>) on the
/// calling thread and one dedicated thread per other core. A batch-1 decode step makes ~130 such
/// calls, each 0.03–0.5 ms long and separated by libtorch ops of similar length. Through
/// Parallel.For the pool worker has gone to sleep between calls and takes 20–70 µs to wake on the
/// VMs measured, by which time the caller has often done every part itself, so most projections
/// streamed on one core (docs/benchmarks.md, issue #9). These workers instead spin for
/// <see cref="SpinMicroseconds"/> after each call (yielding the core to any other ready thread)
/// before they sleep, so within a step they are awake when the next call comes, and parts are
/// claimed one at a time, so a late worker only means the caller takes more of them.
/// Calls from several threads at once are correct: one runs on the workers, the others run
/// their parts inline.
/// </summary>
public static class KernelWorkers
{
    /// <summary>How long a worker waits awake for the next call before it sleeps.</summary>
    public static double SpinMicroseconds { get; set; } = 2000;

    static readonly object Gate = new();
    static readonly SemaphoreSlim Wake = new(0);
    static readonly int WorkerCount = Math.Max(0, Environment.ProcessorCount - 1);
    static int _started;
    static int _sleepers;
    // (generation << 32) | next part to claim: a claim is valid only within its own call.
    static long _claim;
    static Action<int>? _job;
    static int _parts, _done;
    static Exception? _error;
    [ThreadStatic] static bool _inJob;

    /// <summary>Threads that can take parts of one call (the caller included).</summary>
    public static int Threads => WorkerCount + 1;

    /// <summary>Runs job(0) … job(parts − 1), each exactly once, and returns when all are done.</summary>
    public static void Run(int parts, Action<int> job)
    {
        if (parts <= 1 || WorkerCount == 0 || _inJob || !Monitor.TryEnter(Gate))
        {
            for (int p = 0; p < parts; p++) job(p);
            return;
        }
        try
        {
            EnsureStarted();
            _job = job;
            _parts = parts;
            _done = 0;
            _error = null;
            long generation = (Volatile.Read(ref _claim) >> 32) + 1;
            Interlocked.Exchange(ref _claim, generation << 32);   // publishes the job (full fence)
            int sleepers = Volatile.Read(ref _sleepers);
            if (sleepers > 0) Wake.Release(sleepers);
            Work(generation);
            var spin = new SpinWait();
            while (Volatile.Read(ref _done) < parts) spin.SpinOnce(sleep1Threshold: -1);
            _job = null;
            if (_error is { } e) throw new AggregateException(e);
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }

    /// <summary>Claims and runs parts of call <paramref name="generation"/> until none are left.</summary>
    static void Work(long generation)
    {
        while (true)
        {
            long claim = Volatile.Read(ref _claim);
            if (claim >> 32 != generation) return;
            var job = _job;
            int parts = _parts, next = (int)claim;
            if (job is null || next >= parts) return;
            if (Interlocked.CompareExchange(ref _claim, claim + 1, claim) != claim) continue;
            _inJob = true;
            try { job(next); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            finally { _inJob = false; }
            Interlocked.Increment(ref _done);
        }
    }

    static void EnsureStarted()
    {
        if (Interlocked.Exchange(ref _started, 1) == 1) return;
        for (int i = 0; i < WorkerCount; i++)
            new Thread(Loop) { IsBackground = true, Name = $"rgemma-kernel-{i + 1}" }.Start();
    }

    static void Loop()
    {
        long seen = Volatile.Read(ref _claim) >> 32;
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + (long)(SpinMicroseconds * Stopwatch.Frequency / 1e6);
            var spin = new SpinWait();
            long generation;
            while ((generation = Volatile.Read(ref _claim) >> 32) == seen)
            {
                if (Stopwatch.GetTimestamp() < spinUntil)
                {
                    spin.SpinOnce(sleep1Threshold: -1);   // yields to other ready threads, never sleeps
                    continue;
                }
                Interlocked.Increment(ref _sleepers);
                if (Volatile.Read(ref _claim) >> 32 == seen) Wake.Wait();
                Interlocked.Decrement(ref _sleepers);
                spinUntil = Stopwatch.GetTimestamp() + (long)(SpinMicroseconds * Stopwatch.Frequency / 1e6);
            }
            seen = generation;
            Work(generation);
        }
    }
}
