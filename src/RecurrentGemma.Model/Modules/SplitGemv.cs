using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// y = x·Wᵀ + b for a few rows (decode), with W split by output rows across the cores.
/// libtorch runs an f32 GEMV on one thread here (~22 GB/s of weights), two halves on two threads
/// read ~37 GB/s (docs/benchmarks.md); decode is memory-bound, so this is nearly its speed-up.
/// bf16 GEMV is already multi-threaded, and larger batches go to the regular GEMM.
/// </summary>
public static class SplitGemv
{
    /// <summary>Rows (batch × tokens) up to which the split is used.</summary>
    public const long MaxRows = 8;
    /// <summary>Below this many weight elements a split costs more than it saves.</summary>
    const long MinElements = 1 << 20;

    /// <summary>A switch for benchmarks.</summary>
    public static bool Enabled { get; set; } = true;

    public static bool Applies(Tensor x, Tensor weight) =>
        Enabled && Environment.ProcessorCount > 1 && weight.dtype == ScalarType.Float32
        && CpuPaths.On(weight) && weight.numel() >= MinElements
        && x.numel() / x.size(-1) <= MaxRows;

    /// <summary>Each weight's row blocks, cut once (views that live as long as the weight).</summary>
    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Tensor, Tensor?[][]> Parts = new();

    /// <summary>
    /// Drops a weight's cut views now, for a weight that is about to go (the kernel timings' test
    /// weights). Otherwise the views keep its memory alive until the garbage collector finalizes
    /// them: after the start-up timings that was 0.79 GB of test weights resident (2B bf16 harness,
    /// docs/benchmarks.md).
    /// </summary>
    public static void Forget(Tensor weight)
    {
        if (!Parts.TryGetValue(weight, out var cut)) return;
        Parts.Remove(weight);
        foreach (var views in cut)
            foreach (var view in views) view?.Dispose();
    }

    /// <summary>Whether this weight's cut views are held now (tests).</summary>
    public static bool Holds(Tensor weight) => Parts.TryGetValue(weight, out _);

    static Tensor?[][] Cut(Tensor weight, Tensor? bias)
    {
        long outFeatures = weight.size(0);
        int parts = (int)Math.Min(Environment.ProcessorCount, Math.Max(1, outFeatures / 1024));
        long size = (outFeatures + parts - 1) / parts;
        var cut = new Tensor?[2][] { new Tensor?[parts], new Tensor?[parts] };
        for (int p = 0; p < parts; p++)
        {
            long start = p * size, n = Math.Min(size, outFeatures - start);
            cut[0][p] = weight.narrow(0, start, n).DetachFromDisposeScope();
            cut[1][p] = bias?.narrow(0, start, n).DetachFromDisposeScope();
        }
        return cut;
    }

    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        var cut = Parts.GetValue(weight, w => Cut(w, bias));
        var weights = cut[0];
        var biases = cut[1];
        int parts = weights.Length;
        // Results made on pool threads are outside the caller's dispose scope: freed here.
        var results = new Tensor[parts];
        try
        {
            Parallel.For(0, parts, p => results[p] = nn.functional.linear(x, weights[p]!, biases[p]));
            return cat(results, -1);
        }
        finally
        {
            foreach (var r in results) r?.Dispose();
        }
    }
}
