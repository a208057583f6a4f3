using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Griffin's recurrent temporal block:
///   y = gelu_tanh(linear_y(h)),  u = linear_x(h),  v = conv_1d(u),  o = rg_lru(v),
///   out = linear_out(o ⊙ y).
/// linear_y and linear_x read the same input: one fused [2L, D] matmul computes both. A small
/// CPU decode step runs everything between that matmul and linear_out as one kernel pass
/// (<see cref="RecurrentStepRows"/>), reading and writing the slots' state in place.
/// </summary>
public sealed class RecurrentBlock : TemporalBlock
{
    readonly Linear linear_y;
    readonly Linear linear_x;
    readonly Linear linear_out;
    readonly CausalConv1D conv_1d;
    readonly RgLru rg_lru;
    readonly FusedLinear _yx;
    readonly long _width;

    public RecurrentBlock(GriffinConfig c, ScalarType dtype, Device device) : base(nameof(RecurrentBlock))
    {
        _width = c.LruWidth;
        _yx = new FusedLinear(c.HiddenSize, [c.LruWidth, c.LruWidth], true, dtype, device);
        linear_y = _yx.Part(0);
        linear_x = _yx.Part(1);
        linear_out = new Linear(c.LruWidth, c.HiddenSize, true, dtype, device);
        conv_1d = new CausalConv1D(c.LruWidth, c.Conv1dWidth, dtype, device);
        rg_lru = new RgLru(c.LruWidth, c.NumAttentionHeads, dtype, device);
        RegisterComponents();
    }

    internal override void Prepare()
    {
        conv_1d.Prepare();
        rg_lru.Prepare();
    }

    internal override Projection Input => _yx.AsProjection;        // [B, T, 2L]: y's and x's inputs

    internal override Projection Output => linear_out.AsProjection;

    internal override Tensor Mix(Tensor yx, ForwardBatch batch, int layer)
    {
        var state = batch.State;
        var trace = batch.Trace;
        var yPre = yx.narrow(-1, 0, _width);
        var u = yx.narrow(-1, _width, _width);
        if (trace is not null)
        {
            trace($"layer{layer}.linear_y.out", yPre);
            trace($"layer{layer}.linear_x.out", u);
        }
        if (RecurrentStepRows.Applies(yx, batch, rg_lru.StepGates))
        {
            return RecurrentStepRows.Forward(yx, conv_1d.Taps, conv_1d.Bias, state.Conv[layer]!, state.Rnn[layer]!,
                batch.Plan.Slots, rg_lru.StepGates, rg_lru.GateBias, rg_lru.NegScale);
        }
        var y = yPre.gelu_(TorchSharp.Modules.GELU.Approximate.tanh);   // in place: yPre is not needed again

        var convPool = state.Conv[layer]!;
        var v = conv_1d.Forward(u, convPool.index_select(0, batch.SlotIndex), batch.ConvRows, out var newHistory);
        trace?.Invoke($"layer{layer}.conv_1d.out", v);
        convPool.index_copy_(0, batch.SlotIndex, newHistory);

        var rnnPool = state.RnnBlocks[layer]!;                        // [N, 1, H, L/H] view
        var o = rg_lru.Forward(v, batch, rnnPool.index_select(0, batch.SlotIndex), out var hLast);
        trace?.Invoke($"layer{layer}.rg_lru.out", o);
        rnnPool.index_copy_(0, batch.SlotIndex, hLast);

        return y.mul_(o);   // float32 o into y's dtype: one rounding, in place
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _yx.Dispose();
        base.Dispose(disposing);
    }
}
