using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>Top-p (nucleus) filtering of the sampler's batched pass, in place on [R, V] logits.</summary>
internal static partial class Sampler
{
    /// <summary>
    /// Top-p by sorting every row (any device but the CPU; on a GPU a sort of the batch is cheap
    /// and needs no host read): drop an id when the ids before it in descending order already
    /// reach top_p (the first always stays). In place on <paramref name="y"/> ([R, V]); p: [R, 1].
    /// </summary>
    internal static void TopPBySort(Tensor y, Tensor p)
    {
        var (sorted, order) = y.sort(-1, descending: true);
        var probs = sorted.softmax(-1);
        var drop = (probs.cumsum(-1) - probs).ge_(p).to(ScalarType.Bool);
        y.masked_fill_(zeros_like(drop).scatter_(1, order, drop), Scalars.NegativeInfinity);
    }

    /// <summary>
    /// The same top-p without ordering anything (CPU): each row's threshold is found on the host by
    /// <see cref="NucleusThreshold"/> over its probabilities (two passes over the row, whatever
    /// its shape), and every id less likely than it is dropped in one masked fill. Sorting 64
    /// rows of 256k ids took ~0.8–1.1 s a step on 2 cores; ordering only each row's 1024, then
    /// 16384, most likely ids (the way before this) ~50 ms when a trained model's few hundred ids
    /// hold the nucleus but ~180–370 ms when several thousand do and the sort's time when most of
    /// the vocabulary does (a flat row, as random weights give); this takes ~40–66 ms in all three
    /// cases (`bench --suite sampler`). Reading the probabilities is a host read, free on the CPU,
    /// where there is no device queue to drain.
    /// </summary>
    internal static void TopPBySelection(Tensor y, Tensor p)
    {
        int rows = (int)y.size(0), v = (int)y.size(1);
        RecurrentGemma.Model.Modules.CpuPaths.CountRead();   // a host read of the probabilities: never while the CPU paths are off
        var probs = y.softmax(-1).contiguous();
        var wanted = p.to(ScalarType.Float64).contiguous();
        var topP = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(wanted.bytes).ToArray();
        var thresholds = new float[rows];
        // Rows are independent: from 4 on they are spread over the cores (16–64 rows of 256k ids:
        // ~15–20 % less time than one thread in `bench --suite sampler`).
        Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = rows >= 4 ? -1 : 1 },
            () => System.Buffers.ArrayPool<float>.Shared.Rent(v),
            (r, _, scratch) =>
            {
                var row = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(probs.bytes).Slice(r * v, v);
                thresholds[r] = NucleusThreshold.Find(row, topP[r], scratch);
                return scratch;
            },
            scratch => System.Buffers.ArrayPool<float>.Shared.Return(scratch));
        y.masked_fill_(probs.lt(tensor(thresholds).unsqueeze(1)), Scalars.NegativeInfinity);
    }
}
