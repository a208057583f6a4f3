using RecurrentGemma.Model;

namespace RecurrentGemma.Cli.Bench;

/// <summary>What one forward pass took: the most C heap (libtorch's CPU tensors) it held at once, and the managed bytes it allocated.</summary>
public readonly record struct Allocated(long HeapBytes, long ManagedBytes)
{
    public bool HeapKnown => HeapBytes >= 0;

    /// <summary>The median of each reading over several passes (a collection can land in one).</summary>
    public static Allocated Median(IReadOnlyCollection<Allocated> xs) =>
        new((long)Spread.Of(xs.Select(a => (double)a.HeapBytes).ToList()).Median, (long)Spread.Of(xs.Select(a => (double)a.ManagedBytes).ToList()).Median);
}

/// <summary>
/// Measures the memory one forward pass takes: the most C heap its tensors held at once (read at
/// every part mark, where that part's tensors are still alive: a layer's are freed as it ends, so
/// this is the largest layer's temporaries plus what the pass keeps, e.g. its logits) and the
/// managed bytes it allocated (the whole process's, GC.GetTotalAllocatedBytes precise, so run it
/// where nothing else allocates). Not counted: buffers libtorch allocates and frees inside one op.
/// </summary>
public static class ForwardAllocations
{
    public static Allocated Measure(GriffinForCausalLM model, Action forward)
    {
        long most = -1;
        var previous = model.PartDone;
        model.PartDone = name =>
        {
            previous?.Invoke(name);
            most = Math.Max(most, ProcessStats.HeapInUse());
        };
        long heap0 = ProcessStats.HeapInUse();
        long managed0 = GC.GetTotalAllocatedBytes(precise: true);
        try { forward(); }
        finally { model.PartDone = previous; }
        long managed = GC.GetTotalAllocatedBytes(precise: true) - managed0;
        return new Allocated(heap0 < 0 || most < 0 ? -1 : most - heap0, managed);
    }

    /// <summary>"1.23 MB / 4.5 KB" style, or "n/a" for the heap where it cannot be read.</summary>
    public static string Format(Allocated a) =>
        $"{(a.HeapKnown ? Bytes(a.HeapBytes) : "n/a")} / {Bytes(a.ManagedBytes)}";

    public static string Bytes(double b)
    {
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        return Math.Abs(b) >= 1e6 ? (b / 1e6).ToString("F2", ci) + " MB" : Math.Abs(b) >= 1e3 ? (b / 1e3).ToString("F1", ci) + " kB" : b.ToString("F0", ci) + " B";
    }
}
