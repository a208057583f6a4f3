using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Local multi-query attention (griffin-math.md §6): H query heads share one key/value head;
/// partial RoPE on the first half of each head; a query sees itself and the W previous tokens.
/// Keys and values live in a W-slot ring per sequence; a chunk attends over ring ∪ chunk and
/// only then writes its own last W keys (so W + 1 keys are visible, as in the reference).
/// </summary>
public sealed class LocalAttentionBlock : TemporalBlock
{
    /// <summary>The reference's mask value (finite, so a fully masked padded row stays finite).</summary>
    const float MaskValue = -2.3819763e38f;

    readonly Linear q_proj;
    readonly Linear k_proj;
    readonly Linear v_proj;
    readonly Linear o_proj;
    readonly int _heads, _headDim;

    public LocalAttentionBlock(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(LocalAttentionBlock))
    {
        _heads = c.NumAttentionHeads;
        _headDim = c.HeadDim;
        q_proj = new Linear(c.HiddenSize, (long)_heads * _headDim, false, dtype, device);
        k_proj = new Linear(c.HiddenSize, _headDim, false, dtype, device);
        v_proj = new Linear(c.HiddenSize, _headDim, false, dtype, device);
        o_proj = new Linear((long)_heads * _headDim, c.HiddenSize, true, dtype, device);
        RegisterComponents();
    }

    internal override Tensor Forward(Tensor h, ForwardBatch batch, int layer)
    {
        int b = batch.B, t = batch.T, hd = _headDim, nh = _heads;
        var trace = batch.Trace;
        var q = q_proj.Forward(h);                                   // [B, T, H·hd]
        var k = k_proj.Forward(h);                                   // [B, T, hd]
        var v = v_proj.Forward(h);                                   // [B, T, hd]
        trace?.Invoke($"layer{layer}.q_proj.out", q);
        trace?.Invoke($"layer{layer}.k_proj.out", k);
        trace?.Invoke($"layer{layer}.v_proj.out", v);

        q = ApplyRope(q.view(b, t, nh, hd), batch).view(b, t, nh * hd);
        k = ApplyRope(k.view(b, t, 1, hd), batch).view(b, t, hd);
        trace?.Invoke($"layer{layer}.q_rope", q);
        trace?.Invoke($"layer{layer}.k_rope", k);

        var keysPool = batch.State.Keys[layer]!;                     // [N, W, hd]
        var valuesPool = batch.State.Values[layer]!;
        Tensor keys = k, values = v;
        if (batch.HasHistory)
        {
            keys = cat([keysPool.index_select(0, batch.SlotIndex), k], 1);     // [B, S, hd]
            values = cat([valuesPool.index_select(0, batch.SlotIndex), v], 1);
        }

        // One shared KV head: fold heads into rows, [B, T·H, hd] × [B, hd, S].
        var q32 = q.view(b, (long)t * nh, hd).to(ScalarType.Float32);
        var scores = bmm(q32, keys.to(ScalarType.Float32).transpose(1, 2)) * (1.0 / Math.Sqrt(hd));
        scores = scores.view(b, t, nh, -1).masked_fill(batch.AttentionMask.logical_not(), MaskValue);
        var probs = scores.softmax(-1).to(h.dtype).view(b, (long)t * nh, -1);  // softmax in float32
        var attended = bmm(probs, values).view(b, t, nh * hd);

        // Now (not before) the chunk's own last W keys/values enter the ring.
        keysPool.view(-1, hd).index_copy_(0, batch.RingDest, k.reshape(-1, hd).index_select(0, batch.RingSrc));
        valuesPool.view(-1, hd).index_copy_(0, batch.RingDest, v.reshape(-1, hd).index_select(0, batch.RingSrc));

        return o_proj.Forward(attended);
    }

    /// <summary>
    /// Rotates dims [0, R) of each head, pairing i with i + R/2 (halves, not adjacent pairs);
    /// dims [R, hd) pass through. x: [B, T, heads, hd].
    /// </summary>
    static Tensor ApplyRope(Tensor x, ForwardBatch batch)
    {
        long half = batch.Cos.shape[^1];
        var first = x.narrow(-1, 0, half);
        var second = x.narrow(-1, half, half);
        var rest = x.narrow(-1, 2 * half, x.shape[^1] - 2 * half);
        var cos = batch.Cos; var sin = batch.Sin;
        return cat([first * cos - second * sin, second * cos + first * sin, rest], -1);
    }
}
