using RecurrentGemma.Model;

namespace RecurrentGemma.Cli.Bench;

/// <summary>What one forward pass allocated: C heap bytes (libtorch's CPU tensors) and managed bytes.</summary>
public readonly record struct Allocated(long HeapBytes, long ManagedBytes)
{
    public bool HeapKnown => HeapBytes >= 0;
}

/// <summary>
/// Measures the memory one forward pass allocates. Every tensor a pass creates stays in its dispose
/// scope until the pass returns, so the C heap's in-use bytes at the model's last mark ("head",
/// before the scope ends) less those at the start are the bytes its tensors took — the
/// temporaries a step allocates afresh each time (not counted: buffers libtorch allocates and
/// frees inside one op). Managed bytes are the whole process's allocations over the pass
/// (GC.GetTotalAllocatedBytes, precise), so run it where nothing else allocates.
/// </summary>
public static class ForwardAllocations
{
    public static Allocated Measure(GriffinForCausalLM model, Action forward)
    {
        long heapAtHead = -1;
        var previous = model.PartDone;
        model.PartDone = name =>
        {
            previous?.Invoke(name);
            if (name == "head") heapAtHead = ProcessStats.HeapInUse();
        };
        long heap0 = ProcessStats.HeapInUse();
        long managed0 = GC.GetTotalAllocatedBytes(precise: true);
        try { forward(); }
        finally { model.PartDone = previous; }
        long managed = GC.GetTotalAllocatedBytes(precise: true) - managed0;
        return new Allocated(heap0 < 0 || heapAtHead < 0 ? -1 : heapAtHead - heap0, managed);
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
