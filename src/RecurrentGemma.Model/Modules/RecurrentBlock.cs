using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Griffin's recurrent temporal block:
///   y = gelu_tanh(linear_y(h)),  u = linear_x(h),  v = conv_1d(u),  o = rg_lru(v),
///   out = linear_out(o ⊙ y).
/// </summary>
public sealed class RecurrentBlock : TemporalBlock
{
    readonly Linear linear_y;
    readonly Linear linear_x;
    readonly Linear linear_out;
    readonly CausalConv1D conv_1d;
    readonly RgLru rg_lru;

    public RecurrentBlock(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(RecurrentBlock))
    {
        linear_y = new Linear(c.HiddenSize, c.LruWidth, true, dtype, device);
        linear_x = new Linear(c.HiddenSize, c.LruWidth, true, dtype, device);
        linear_out = new Linear(c.LruWidth, c.HiddenSize, true, dtype, device);
        conv_1d = new CausalConv1D(c.LruWidth, c.Conv1dWidth, dtype, device);
        rg_lru = new RgLru(c.LruWidth, c.NumAttentionHeads, dtype, device);
        RegisterComponents();
    }

    internal override Tensor Forward(Tensor h, ForwardBatch batch, int layer)
    {
        var state = batch.State;
        var trace = batch.Trace;
        var yPre = linear_y.Forward(h);
        trace?.Invoke($"layer{layer}.linear_y.out", yPre);
        var y = yPre.gelu(TorchSharp.Modules.GELU.Approximate.tanh);
        var u = linear_x.Forward(h);
        trace?.Invoke($"layer{layer}.linear_x.out", u);

        var convPool = state.Conv[layer]!;
        var history = convPool.index_select(0, batch.SlotIndex);
        var v = conv_1d.Forward(u, history, batch.Ragged ? batch.Lengths : null, out var newHistory);
        trace?.Invoke($"layer{layer}.conv_1d.out", v);
        convPool.index_copy_(0, batch.SlotIndex, newHistory);

        var rnnPool = state.Rnn[layer]!;
        var o = rg_lru.Forward(v, batch, rnnPool.index_select(0, batch.SlotIndex), out var hLast);
        trace?.Invoke($"layer{layer}.rg_lru.out", o);
        rnnPool.index_copy_(0, batch.SlotIndex, hLast);

        return linear_out.Forward(o.to(h.dtype) * y);
    }
}
