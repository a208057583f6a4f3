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
        && weight.device_type == TorchSharp.DeviceType.CPU && weight.numel() >= MinElements
        && x.numel() / x.shape[^1] <= MaxRows;

    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias)
    {
        long outFeatures = weight.shape[0];
        int parts = (int)Math.Min(Environment.ProcessorCount, Math.Max(1, outFeatures / 1024));
        long size = (outFeatures + parts - 1) / parts;
        var weights = new Tensor[parts];
        var biases = new Tensor?[parts];
        for (int p = 0; p < parts; p++)
        {
            long start = p * size, n = Math.Min(size, outFeatures - start);
            weights[p] = weight.narrow(0, start, n);
            biases[p] = bias?.narrow(0, start, n);
        }
        // Results made on pool threads are outside the caller's dispose scope: freed here.
        var results = new Tensor[parts];
        try
        {
            Parallel.For(0, parts, p => results[p] = nn.functional.linear(x, weights[p], biases[p]));
            return cat(results, -1);
        }
        finally
        {
            foreach (var r in results) r?.Dispose();
        }
    }
}
