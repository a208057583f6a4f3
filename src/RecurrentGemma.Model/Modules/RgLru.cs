using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Real-Gated Linear Recurrent Unit (griffin-math.md §5.2):
///   i_t = σ(BlockDiag(v_t; G_in) + β_in),  r_t = σ(BlockDiag(v_t; G_rec) + β_rec)
///   log a_t = −8 · r_t ⊙ softplus(λ),   a_t = exp(log a_t)
///   h_t = ã_t ⊙ h_{t−1} + v_t ⊙ i_t ⊙ μ_t,   ã = a, μ = √(1−a²)  (at position 0: ã = 0, μ = 1)
/// The gates and the scan run in float32 and h is kept in float32 whatever the model dtype.
/// </summary>
public sealed class RgLru : nn.Module
{
    readonly Parameter recurrent_param;        // λ [L]
    readonly Parameter input_gate_weight;      // [H, L/H, L/H], used as [in, out]
    readonly Parameter input_gate_bias;        // [H, L/H]
    readonly Parameter recurrent_gate_weight;  // [H, L/H, L/H]
    readonly Parameter recurrent_gate_bias;    // [H, L/H]
    readonly int _blocks;

    public RgLru(int width, int blocks, ScalarType dtype, Device device) : base(nameof(RgLru))
    {
        int bw = width / blocks;
        recurrent_param = Param.Empty([width], dtype, device);
        input_gate_weight = Param.Empty([blocks, bw, bw], dtype, device);
        input_gate_bias = Param.Empty([blocks, bw], dtype, device);
        recurrent_gate_weight = Param.Empty([blocks, bw, bw], dtype, device);
        recurrent_gate_bias = Param.Empty([blocks, bw], dtype, device);
        _blocks = blocks;
        RegisterComponents();
    }

    /// <param name="v">[B, T, L] conv outputs.</param>
    /// <param name="h0">[B, L] float32 state before the chunk.</param>
    /// <param name="hLast">[B, L] float32 state after each row's last valid token.</param>
    /// <returns>[B, T, L] float32 outputs (o_t = h_t).</returns>
    internal Tensor Forward(Tensor v, ForwardBatch batch, Tensor h0, out Tensor hLast)
    {
        long b = v.shape[0], t = v.shape[1], l = v.shape[2];
        var v32 = v.to(ScalarType.Float32);
        var gateX = BlockDiagonal(v32, input_gate_weight, input_gate_bias).sigmoid();
        var gateA = BlockDiagonal(v32, recurrent_gate_weight, recurrent_gate_bias).sigmoid();

        var logA = -8.0f * gateA * nn.functional.softplus(recurrent_param.to(ScalarType.Float32));
        var a = logA.exp();
        var multiplier = (1.0f - (2.0f * logA).exp()).sqrt();
        var reset = (batch.Positions == 0).unsqueeze(-1);           // [B, T, 1]
        multiplier = multiplier.masked_fill(reset, 1.0f);             // a new document's input is not scaled
        a = a.masked_fill(reset, 0.0f);                               // … and forgets the past
        var x = v32 * gateX * multiplier;
        if (batch.Valid is { } valid)
        {
            // Padding after a row's last token must leave h untouched: a = 1, x = 0.
            var pad = valid.logical_not().unsqueeze(-1);
            a = a.masked_fill(pad, 1.0f);
            x = x.masked_fill(pad, 0.0f);
        }

        // The definition: a left-to-right scan. T is a prefill chunk (≤ a few hundred) or 1.
        var h = h0;
        if (t == 1)
        {
            h = addcmul(x.select(1, 0), a.select(1, 0), h, 1);
            hLast = h;
            return h.unsqueeze(1);
        }
        var outputs = empty([b, t, l], ScalarType.Float32, v.device);
        for (long i = 0; i < t; i++)
        {
            h = addcmul(x.select(1, i), a.select(1, i), h, 1);
            outputs.select(1, i).copy_(h);
        }
        hLast = h;
        return outputs;
    }

    /// <summary>g_h = v_h · G[h] + β[h] for each of the H channel blocks.</summary>
    Tensor BlockDiagonal(Tensor v32, Tensor weight, Tensor bias)
    {
        long b = v32.shape[0], t = v32.shape[1], l = v32.shape[2];
        var blocks = v32.view(b, t, _blocks, l / _blocks);
        var g = einsum("bthi,hij->bthj", blocks, weight.to(ScalarType.Float32)) + bias.to(ScalarType.Float32);
        return g.reshape(b, t, l);
    }
}
