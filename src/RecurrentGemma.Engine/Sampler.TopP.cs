using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>Top-p (nucleus) filtering of the sampler's batched pass, in place on [R, V] logits.</summary>
internal static partial class Sampler
{
    /// <summary>How many of a row's most likely ids the CPU's top-p orders, in turn, before it
    /// selects the row's threshold over all its ids: 1024 hold the nucleus of a trained model's usual next-token distribution; 16384 (a
    /// partial selection of ~28 ms against ~240 ms for sorting 16 rows of 256k ids) catch broad
    /// ones, as at a high temperature.</summary>
    internal static readonly int[] TopPCandidates = [1024, 16384];

    /// <summary>
    /// Top-p by sorting every row (any device; on a GPU a sort of the batch is cheap and needs no
    /// host read): drop an id when the ids before it in descending order already reach top_p (the
    /// first always stays). In place on <paramref name="y"/> ([R, V]); p: [R, 1].
    /// </summary>
    internal static void TopPBySort(Tensor y, Tensor p)
    {
        var (sorted, order) = y.sort(-1, descending: true);
        var probs = sorted.softmax(-1);
        var drop = (probs.cumsum(-1) - probs).ge_(p).to(ScalarType.Bool);
        y.masked_fill_(zeros_like(drop).scatter_(1, order, drop), Scalars.NegativeInfinity);
    }

    /// <summary>
    /// Top-p on the CPU for rows whose nucleus is too wide for a partial selection (a flat row:
    /// most of the vocabulary): each row's threshold is found on the host by
    /// <see cref="NucleusThreshold"/> over its probabilities, and every id less likely than it is
    /// dropped. Before, these rows were sorted whole (`bench --suite sampler`, flat rows).
    /// </summary>
    internal static void TopPBySelection(Tensor y, Tensor p)
    {
        int rows = (int)y.size(0), v = (int)y.size(1);
        var probs = y.softmax(-1).contiguous();
        var wanted = p.to(ScalarType.Float64).contiguous();
        var all = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(probs.bytes);
        var topP = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(wanted.bytes);
        var thresholds = new float[rows];
        var scratch = System.Buffers.ArrayPool<float>.Shared.Rent(v);
        try
        {
            for (int r = 0; r < rows; r++) thresholds[r] = NucleusThreshold.Find(all.Slice(r * v, v), topP[r], scratch);
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(scratch); }
        y.masked_fill_(probs.lt(tensor(thresholds).unsqueeze(1)), Scalars.NegativeInfinity);
    }

    /// <summary>
    /// The same top-p without sorting the vocabulary (CPU): only the row's K most likely ids are
    /// ordered (a partial selection). When they hold at least top_p of the mass, the decision for
    /// each of them is the sort's, and every id outside them is dropped (the mass before it is at
    /// least theirs); a row whose K ids fall short goes on to the next, larger K if that could
    /// reach top_p, and goes to <see cref="TopPBySelection"/> if not. Sorting 64 rows of 256k ids
    /// took ~1.1 s a step on 2 cores against ~50 ms for this when a trained model's few hundred ids hold the nucleus,
    /// ~180 ms when several thousand do (`bench --suite sampler`). Reading whether any row fell
    /// short is a host read, free on the CPU, where there is no device queue to drain.
    /// </summary>
    internal static void TopPByCandidates(Tensor y, Tensor p, ReadOnlySpan<int> candidates)
    {
        if (candidates.IsEmpty || candidates[0] >= y.size(1)) { TopPBySelection(y, p); return; }
        int k = candidates[0];
        var (values, ids) = y.softmax(-1).topk(k);                                 // [R, K], descending
        var before = values.cumsum(-1).sub_(values);
        var drop = ones_like(y, ScalarType.Bool).scatter_(1, ids, before.ge(p));   // outside the K: dropped
        var kth = values.narrow(1, k - 1, 1);
        var held = before.narrow(1, k - 1, 1).add_(kth, Scalars.One);              // [R, 1]: the K's mass
        var shortRows = held.lt(p).squeeze(1);
        if (shortRows.any().item<bool>())
        {
            // The next count can hold at most this mass (no id past the K-th is more likely than
            // it): rows it cannot bring to top_p go to the threshold selection now.
            var rest = candidates[1..];
            var reachable = rest.IsEmpty || rest[0] >= y.size(1) ? null
                : held.add(kth, Scalars.Of((double)(rest[0] - k))).ge(p).squeeze(1);
            Redo(y, p, drop, reachable is null ? shortRows : shortRows.logical_and(reachable.logical_not()), []);
            if (reachable is not null) Redo(y, p, drop, shortRows.logical_and(reachable), rest);
        }
        y.masked_fill_(drop, Scalars.NegativeInfinity);
    }

    /// <summary>Decides top-p again for the rows in <paramref name="rows"/> (a [R] mask) with the
    /// given candidate counts (none: the sort), writing them back and clearing their drop flags.</summary>
    static void Redo(Tensor y, Tensor p, Tensor drop, Tensor rows, ReadOnlySpan<int> candidates)
    {
        if (!rows.any().item<bool>()) return;
        var at = rows.nonzero().squeeze(1);
        var part = y.index_select(0, at);
        TopPByCandidates(part, p.index_select(0, at), candidates);
        drop.index_fill_(0, at, Scalars.False);   // decided there
        y.index_copy_(0, at, part);
    }
}
