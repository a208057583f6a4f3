using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Local multi-query attention (docs/model.md, "Local attention"): H query heads share one
/// key/value head; partial RoPE on the first half of each head; a query sees itself and the W
/// previous tokens. Keys and values live in a W-slot ring per sequence; a chunk attends over
/// ring ∪ chunk and only then writes its own last W keys (so W + 1 keys are visible).
/// q, k and v come from one fused [(H+2)·hd, D] matmul, and RoPE rotates q and k together.
/// Scores are computed in the model dtype from the ring as stored (a decode step reads it in
/// place, <see cref="DecodeStep"/>; a bf16 prefill chunk on the CPU may run in float32,
/// <see cref="Chunk"/>); the softmax runs in float32.
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

    internal override Projection Input => _qkv.AsProjection;

    internal override Projection Output => o_proj.AsProjection;

    internal override Tensor Mix(Tensor projected, ForwardBatch batch, int layer)
    {
        int b = batch.B, t = batch.T, hd = _headDim, nh = _heads;
        var trace = batch.Trace;
        var qkv = projected.view(b, t, nh + 2, hd);                          // heads: H queries, k, v
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
        // One shared KV head: fold heads into rows, [B, T·H, hd] × [B, hd, S].
        var rows = q.reshape(b, (long)t * nh, hd);
        var attended = t == 1 && batch.HasHistory
            ? DecodeStep(rows, k, v, keysPool, valuesPool, batch)
            : Chunk(rows, k, v, keysPool, valuesPool, batch, projected.dtype);
        attended = attended.view(b, t, nh * hd);

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
        return attended;
    }

    /// <summary>
    /// A prefill chunk: keys and values are the ring's window (when the rows have history)
    /// followed by the chunk's own, [B, S, hd]. A bf16 chunk on the CPU runs in float32 on
    /// up-cast copies where the projections do (<see cref="UpcastBf16Chunks"/>): the window is
    /// copied for a chunk anyway, and where libtorch's bf16 matmul is the slower one the two
    /// batched products are too (2B, 512 tokens over a full window: 183 → 101 ms per layer on
    /// the Intel Xeon of docs/benchmarks.md).
    /// </summary>
    Tensor Chunk(Tensor rows, Tensor k, Tensor v, Tensor keysPool, Tensor valuesPool, ForwardBatch batch, ScalarType dtype)
    {
        bool upcast = dtype == ScalarType.BFloat16 && CpuPaths.On(rows)
            && (UpcastBf16Chunks ?? Linear.Upcasts(batch.T));
        Tensor Compute(Tensor x) => upcast ? x.to(ScalarType.Float32) : x;
        Tensor keys = Compute(k), values = Compute(v);
        if (batch.HasHistory)
        {
            keys = cat([Compute(keysPool.index_select(0, batch.SlotIndex)), keys], 1);     // [B, S, hd]
            values = cat([Compute(valuesPool.index_select(0, batch.SlotIndex)), values], 1);
        }
        var probs = Attend(bmm(Compute(rows), keys.transpose(1, 2)), batch, upcast ? ScalarType.Float32 : dtype);
        var attended = bmm(probs, values);
        return upcast ? attended.to(dtype) : attended;
    }

    /// <summary>
    /// Whether a bf16 prefill chunk's attention on the CPU runs in float32: null (default) follows
    /// the projections' measured rule for the chunk's token count (<see cref="Linear"/>,
    /// <see cref="Bf16Upcast"/>); true or false pins it (tests, benchmarks).
    /// </summary>
    public static bool? UpcastBf16Chunks { get; set; }

    /// <summary>
    /// A decode step: the window is read where it lies — one view of the ring per run of
    /// consecutive slots (<see cref="SlotRun"/>) — and the new key and value are taken apart,
    /// instead of joining them into a fresh [B, W + 1, hd] copy of the window per layer
    /// (2 × 1 MiB per 2B layer and sequence, each step). Scores and probabilities keep the
    /// ring-then-new order the mask is built in. In bf16 the new value's share is added to the
    /// window's rounded output, so the output rounds twice instead of once.
    /// </summary>
    Tensor DecodeStep(Tensor rows, Tensor k, Tensor v, Tensor keysPool, Tensor valuesPool, ForwardBatch batch)
    {
        long w = keysPool.size(1);
        var mode = WindowRead;
        if (mode is WindowReadMode.Auto or WindowReadMode.Kernel
            && DecodeAttention.Applies(rows, k, v, keysPool, valuesPool, batch.MaskBias)
            && (mode == WindowReadMode.Kernel || (mode == WindowReadMode.Auto && BatchInvariance.Covers(batch.B))   // one order per row whatever the batch
                || DecodeAttention.Prefers(batch.Plan.VisibleRingKeys, batch.B, w,
                DecodeAttention.CrossoverFraction(rows.dtype, _heads, _headDim, w, batch.B))))
            return DecodeAttention.Forward(rows, k, v, keysPool, valuesPool, batch.Plan.Slots, batch.MaskBias, _scale);
        var runs = batch.Plan.SlotRuns;   // host metadata of the plan: no device read
        if (mode is WindowReadMode.Auto or WindowReadMode.Kernel)
            mode = runs.Count == 1 || CpuPaths.On(keysPool) ? WindowReadMode.InPlace : WindowReadMode.Gather;
        if (mode == WindowReadMode.Gather || runs.Count == 1)
        {
            // One run: a view. Scattered rows off the CPU: one gather launch beats a few per run.
            var (keys, values) = runs.Count == 1
                ? (keysPool.narrow(0, runs[0].Slot, runs[0].Length), valuesPool.narrow(0, runs[0].Slot, runs[0].Length))
                : (keysPool.index_select(0, batch.SlotIndex), valuesPool.index_select(0, batch.SlotIndex));
            var scores = cat([bmm(rows, keys.transpose(1, 2)), bmm(rows, k.transpose(1, 2))], -1);   // [B, H, W + 1]
            var probs = Attend(scores, batch, rows.dtype);
            return bmm(probs.narrow(-1, 0, w), values).addcmul_(probs.narrow(-1, w, 1), v, Scalars.One);
        }
        // Several runs on the CPU: a few ops per run cost less than copying every window
        // (2B, 64 rows: 32–36 vs 74 ms per layer in f32; docs/benchmarks.md).
        var windowScores = new Tensor[runs.Count + 1];
        for (int i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            windowScores[i] = bmm(rows.narrow(0, r.Row, r.Length), keysPool.narrow(0, r.Slot, r.Length).transpose(1, 2));
        }
        windowScores[^1] = bmm(rows, k.transpose(1, 2));
        var all = cat([cat(windowScores[..^1], 0), windowScores[^1]], -1);
        var p = Attend(all, batch, rows.dtype);
        var outs = new Tensor[runs.Count];
        for (int i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            outs[i] = bmm(p.narrow(0, r.Row, r.Length).narrow(-1, 0, w), valuesPool.narrow(0, r.Slot, r.Length));
        }
        return cat(outs, 0).addcmul_(p.narrow(-1, w, 1), v, Scalars.One);
    }

    /// <summary>How a decode step reads the windows of a batch whose slots are not one run (tests pin each way).</summary>
    public static WindowReadMode WindowRead { get; set; } = WindowReadMode.Auto;

    /// <summary>Scaled, masked softmax over the keys (float32 statistics), back in the model dtype.</summary>
    Tensor Attend(Tensor scores, ForwardBatch batch, ScalarType dtype)
    {
        // (TorchSharp 0.107's baddbmm passes its arguments wrongly: bmm, then scale and mask in place.)
        // A bf16 model scales and masks in bf16 and takes the softmax in float32 (its dtype argument).
        var probs = scores.mul_(Scalars.Of(_scale)).add_(batch.MaskBias, Scalars.One).softmax(-1, ScalarType.Float32);
        return probs.dtype == dtype ? probs : probs.to(dtype);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _qkv.Dispose(); _rotateHalf?.Dispose(); }
        base.Dispose(disposing);
    }
}

/// <summary>
/// Auto: on the CPU the fused pass per sequence (<see cref="DecodeAttention"/>) when the batch sees
/// few enough ring keys for it to win (measured on this machine), else a view
/// of the ring for one run of consecutive slots, one gather (index_select) when the rows are not
/// one run. Kernel pins the fused pass where its tensors allow it (else as Auto); InPlace
/// (tensor ops per run of slots) and Gather pin one of the tensor paths on any device.
/// </summary>
public enum WindowReadMode { Auto, InPlace, Gather, Kernel }
