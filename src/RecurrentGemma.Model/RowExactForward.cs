using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>
/// A forward pass over several sequences that gives each one the bits it gets alone — a seeded
/// request's prompt then reads the same logits and leaves the same state whatever shares its
/// forward, so seeded prompts need not each read every weight in a forward of their own.
///
/// A padded batch cannot give that: its attention sums over the longest row's key count, its
/// element-wise passes cut the whole tensor into vector blocks and parts by its size, and the
/// projections' kernel is chosen by row count — each moves a row's last bits. Here everything that
/// reads or writes one sequence (norms, the RG-LRU and conv, attention and its ring, the gates,
/// the soft cap) runs on that sequence's own [1, Tᵢ, ·] tensors, exactly the ops its forward alone
/// runs; only the projections — where the time goes, one read of each weight — run once over all
/// rows, through the model's own GEMM kernels, whose every row's sums do not depend on how many
/// other rows they compute (<see cref="RowExactGemm"/>; docs/model.md). A forward of one sequence
/// takes the same path, so alone and shared agree by construction. Costs: one copy of each
/// projection's input rows, and each per-sequence op launched once per sequence.
/// </summary>
internal static class RowExactForward
{
    public static Tensor Run(GriffinModel model, GriffinConfig config, ForwardPlan plan, Action<string>? partDone)
    {
        var rows = plan.Rows!;
        int n = rows.Length;
        ForwardBatch[] batches = [.. rows.Select(p => new ForwardBatch(p, null))];
        var xs = new Tensor[n];
        for (int i = 0; i < n; i++)
            xs[i] = model.EmbedTokens.Lookup(batches[i].Tokens).mul_(Scalars.Of(config.EmbeddingScale)).view(1, rows[i].T, -1);   // [1, Tᵢ, D]
        partDone?.Invoke("embed");
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            using var layerScope = NewDisposeScope();   // the residual streams are updated in place and outlive it
            model.Layers[l].ForwardRows(xs, batches, l, Project);
            partDone?.Invoke($"block{l}");
        }

        Tensor[] z = [.. xs.Select((x, i) => model.FinalNorm.Forward(x.narrow(1, rows[i].T - 1, 1)))];   // [1, 1, D] each
        var head = Project(z, new Projection(model.EmbedTokens.Weight, null));
        var logits = new Tensor[n];
        for (int i = 0; i < n; i++) logits[i] = SoftCap.Logits(head[i], config.LogitsSoftCap);   // per sequence: a pass over [B, V] would cut its vector blocks by B
        var result = cat(logits, 0);   // [B, 1, V] float32
        partDone?.Invoke("head");
        for (int i = 0; i < n; i++) plan.State.Advance((int)plan.Slots[i], plan.Lengths[i]);
        return result;
    }

    /// <summary>One projection for every sequence: their rows in one copy, one kernel call, then each sequence's rows back as [1, Tᵢ, out].</summary>
    static Tensor[] Project(Tensor[] xs, Projection p)
    {
        long k = p.Weight.size(1);
        // Always a fresh copy, even of one sequence: the kernel then reads rows laid out alike however many share it.
        var all = cat([.. xs.Select(x => x.reshape(-1, k))], 0);
        var y = RowExactGemm.Linear(all, p.Weight, p.Bias);
        var outs = new Tensor[xs.Length];
        long at = 0;
        for (int i = 0; i < xs.Length; i++)
        {
            long t = xs[i].size(1);
            outs[i] = y.narrow(0, at, t).view(1, t, -1);
            at += t;
        }
        return outs;
    }
}
