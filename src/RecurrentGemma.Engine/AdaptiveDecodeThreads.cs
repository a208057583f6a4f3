namespace RecurrentGemma.Engine;

/// <summary>
/// Keeps the decode thread choice (<see cref="ThreadCalibration"/>) right while the engine runs.
/// The start-up timing is a few steps in one moment, and on a shared VM that moment can be a slow
/// phase that favours the wrong side (a 2B bf16 engine calibrated 1151 vs 902 ms at batch 16 in
/// one run, where one thread is ~1.5× faster otherwise), and the choice would then hold for the
/// life of the process. So every decode step's forward time is recorded per batch bucket and
/// thread count, as milliseconds per row over the last <see cref="Window"/> steps on each side; a
/// bucket runs on the side with the lower median, and every <see cref="ExploreEvery"/>-th step of
/// a bucket runs on the other side, so that a change of phase shows (at most ~1/32 of the steps
/// on the slower side: about 1.5 % of decode time where that side is 1.5× slower). The
/// calibration's medians seed both sides. Owned by the engine thread; <see cref="Describe"/> may
/// read it from another (a slightly stale answer, nothing more).
/// </summary>
public sealed class AdaptiveDecodeThreads
{
    /// <summary>Steps per side whose median decides (the current side's are the most recent).</summary>
    public const int Window = 7;

    /// <summary>Every this many decode steps of a bucket, one runs on the side not chosen.</summary>
    public const int ExploreEvery = 32;

    readonly int _all;
    readonly int[] _batches;
    readonly Side[] _one, _many;
    readonly long[] _steps;

    public AdaptiveDecodeThreads(DecodeThreads plan)
    {
        _all = plan.AllThreads;
        _batches = plan.Buckets.Select(b => b.Batch).ToArray();
        _one = plan.Buckets.Select(b => new Side(b.OneThreadMs / b.Batch)).ToArray();
        _many = plan.Buckets.Select(b => new Side(b.AllThreadsMs / b.Batch)).ToArray();
        _steps = new long[_batches.Length];
    }

    /// <summary>How many times a bucket's chosen side changed since start-up.</summary>
    public long Switches { get; private set; }

    /// <summary>Decode steps recorded since start-up.</summary>
    public long Recorded { get; private set; }

    /// <summary>
    /// What the engine knows now, per bucket as step times at the bucket's batch size (its
    /// per-row medians × the batch): the plan the next process starts from (<see cref="ThreadCalibration.Remember"/>).
    /// </summary>
    public IReadOnlyList<ThreadTiming> Snapshot() =>
        [.. _batches.Select((b, i) => new ThreadTiming(b, _one[i].Median * b, _many[i].Median * b))];

    /// <summary>The torch threads for a decode step of <paramref name="rows"/> sequences.</summary>
    public int Choose(int rows)
    {
        int i = Bucket(rows);
        if (i < 0 || _all <= 1) return _all;
        bool one = PrefersOne(i);
        if (++_steps[i] % ExploreEvery == 0) one = !one;
        return one ? 1 : _all;
    }

    /// <summary>Records how long a decode step of <paramref name="rows"/> took on <paramref name="threads"/> threads.</summary>
    public void Record(int rows, int threads, double milliseconds)
    {
        int i = Bucket(rows);
        if (i < 0 || rows <= 0 || !(milliseconds >= 0)) return;
        bool before = PrefersOne(i);
        Recorded++;
        (threads == 1 ? _one[i] : _many[i]).Add(milliseconds / rows);
        if (PrefersOne(i) != before) Switches++;
    }

    /// <summary>The current choice per bucket, for logs and benchmark headers.</summary>
    public string Describe() =>
        $"{DecodeThreads.Summary(_batches.Select((b, i) => (b, PrefersOne(i))))} ({Switches} changes while running)";

    bool PrefersOne(int i) => _one[i].Median <= _many[i].Median;

    int Bucket(int rows)
    {
        for (int i = 0; i < _batches.Length; i++)
            if (rows <= _batches[i]) return i;
        return -1;   // beyond the timed batches: libtorch's GEMM on every thread
    }

    /// <summary>The last <see cref="Window"/> per-row times of one side (the calibration's first).</summary>
    sealed class Side(double seed)
    {
        readonly List<double> _recent = [seed];

        public double Median { get; private set; } = seed;

        public void Add(double value)
        {
            if (_recent.Count == Window) _recent.RemoveAt(0);
            _recent.Add(value);
            var sorted = _recent.Order().ToList();
            Median = sorted[sorted.Count / 2];
        }
    }
}
