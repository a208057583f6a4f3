using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Local multi-query attention (docs/model.md, "Local attention"): H query heads share one
/// key/value head; partial RoPE on the first half of each head; a query sees itself and the W
/// previous tokens. Keys and values live in a W-slot ring per sequence; a chunk attends over
/// ring ∪ chunk and only then writes its own last W keys (so W + 1 keys are visible).
/// q, k and v come from one fused [(H+2)·hd, D] matmul, and RoPE rotates q and k together.
/// Scores are computed in the model dtype from the ring as stored; the softmax runs in float32.
/// </summary>
public sealed class LocalAttentionBlock : TemporalBlock
{
    readonly Linear q_proj;
    readonly Linear k_proj;
    readonly Linear v_proj;
    readonly Linear o_proj;
    readonly FusedLinear _qkv;
    readonly int _heads, _headDim;
    readonly double _scale;
    Tensor? _rotateHalf;   // [hd] long: the index permutation that swaps the two rotary halves

    public LocalAttentionBlock(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(LocalAttentionBlock))
    {
        _heads = c.NumAttentionHeads;
        _headDim = c.HeadDim;
        _scale = 1.0 / Math.Sqrt(_headDim);
        _qkv = new FusedLinear(c.HiddenSize, [(long)_heads * _headDim, _headDim, _headDim], false, dtype, device);
        q_proj = _qkv.Part(0);
        k_proj = _qkv.Part(1);
        v_proj = _qkv.Part(2);
        o_proj = new Linear((long)_heads * _headDim, c.HiddenSize, true, dtype, device);
        RegisterComponents();
        int half = c.RotaryDim / 2;
        var perm = Enumerable.Range(0, _headDim).Select(i => (long)(i < half ? i + half : i < 2 * half ? i - half : i)).ToArray();
        _rotateHalf = tensor(perm, device: device).DetachFromDisposeScope();
    }

    internal override void Prepare() { }

    internal override Tensor Forward(Tensor h, ForwardBatch batch, int layer)
    {
        int b = batch.B, t = batch.T, hd = _headDim, nh = _heads;
        var trace = batch.Trace;
        var qkv = _qkv.Forward(h).view(b, t, nh + 2, hd);                    // heads: H queries, k, v
        var qk = qkv.narrow(2, 0, nh + 1);                                   // k is head H
        var v = qkv.select(2, nh + 1);                                       // [B, T, hd]
        if (trace is not null)
        {
            trace($"layer{layer}.q_proj.out", qk.narrow(2, 0, nh).reshape(b, t, nh * hd));
            trace($"layer{layer}.k_proj.out", qk.select(2, nh));
            trace($"layer{layer}.v_proj.out", v);
        }

        // RoPE on the rotated half of every head: x·C + rot(x)·S (ForwardBatch builds C and S).
        var roped = (qk * batch.RopeCos).add_(qk.index_select(-1, _rotateHalf!).mul_(batch.RopeSin), Scalars.One);
        var q = roped.narrow(2, 0, nh);                                       // [B, T, H, hd]
        var k = roped.select(2, nh);                                          // [B, T, hd]
        if (trace is not null)
        {
            trace($"layer{layer}.q_rope", q.reshape(b, t, nh * hd));
            trace($"layer{layer}.k_rope", k);
        }

        var keysPool = batch.State.Keys[layer]!;                             // [N, W, hd]
        var valuesPool = batch.State.Values[layer]!;
        Tensor keys = k, values = v;
        if (batch.HasHistory)
        {
            keys = cat([keysPool.index_select(0, batch.SlotIndex), k], 1);     // [B, S, hd]
            values = cat([valuesPool.index_select(0, batch.SlotIndex), v], 1);
        }

        // One shared KV head: fold heads into rows, [B, T·H, hd] × [B, hd, S].
        var rows = q.reshape(b, (long)t * nh, hd);
        // (TorchSharp 0.107's baddbmm passes its arguments wrongly: bmm, then scale and mask in place.)
        // A bf16 model scales and masks in bf16 and takes the softmax in float32 (its dtype argument).
        var probs = bmm(rows, keys.transpose(1, 2)).mul_(Scalars.Of(_scale)).add_(batch.MaskBias, Scalars.One).softmax(-1, ScalarType.Float32);
        if (probs.dtype != h.dtype) probs = probs.to(h.dtype);
        var attended = bmm(probs, values).view(b, t, nh * hd);

        // Now (not before) the chunk's own last W keys/values enter the ring.
        var flatKeys = batch.State.FlatKeys[layer]!;                         // [N·W, 1, hd] views
        var flatValues = batch.State.FlatValues[layer]!;
        if (batch.RingSrc is { } src)
        {
            flatKeys.index_copy_(0, batch.RingDest, k.reshape(-1, 1, hd).index_select(0, src));
            flatValues.index_copy_(0, batch.RingDest, v.reshape(-1, 1, hd).index_select(0, src));
        }
        else
        {
            // Decode: row b's one key [1, hd] goes to ring row RingDest[b] as it is.
            flatKeys.index_copy_(0, batch.RingDest, k);
            flatValues.index_copy_(0, batch.RingDest, v);
        }
        return o_proj.Forward(attended);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _qkv.Dispose(); _rotateHalf?.Dispose(); }
        base.Dispose(disposing);
    }
}
