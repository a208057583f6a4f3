using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Depthwise causal convolution over time, width K, with bias:
/// v_t = b + Σ_j c[:, 0, j] ⊙ u_{t−(K−1)+j}. Tap j = K−1 is the current token.
/// The state is the last K−1 inputs u (not outputs), oldest first, so a chunk continues exactly
/// where the previous one stopped: window = [state; chunk].
/// </summary>
public sealed class CausalConv1D : nn.Module
{
    readonly Parameter weight; // [L, 1, K]
    readonly Parameter bias;   // [L]
    readonly int _width;

    public CausalConv1D(long channels, int width, ScalarType dtype, Device device) : base(nameof(CausalConv1D))
    {
        weight = Param.Empty([channels, 1, width], dtype, device);
        bias = Param.Empty([channels], dtype, device);
        _width = width;
        RegisterComponents();
    }

    /// <param name="u">[B, T, L] inputs of this chunk.</param>
    /// <param name="history">[B, K−1, L] the previous K−1 inputs (zeros for a new sequence).</param>
    /// <param name="lengths">valid tokens per row (right-padded chunks); null when all are T.</param>
    /// <param name="newHistory">[B, K−1, L] the last K−1 valid inputs, to store back.</param>
    public Tensor Forward(Tensor u, Tensor history, int[]? lengths, out Tensor newHistory)
    {
        long t = u.shape[1];
        var window = cat([history, u], 1);                          // [B, K−1+T, L]
        var taps = weight.squeeze(1).t();                            // [K, L]
        var v = bias.expand_as(u).clone();
        for (int j = 0; j < _width; j++)
            v.add_(window.narrow(1, j, t) * taps[j]);                // tap j sees u_{t−(K−1)+j}

        if (lengths is null)
            newHistory = window.narrow(1, t, _width - 1);
        else
        {
            // Row b's history ends at its last valid token: window rows len_b … len_b+K−2.
            var rows = lengths.SelectMany(len => Enumerable.Range(len, _width - 1).Select(i => (long)i)).ToArray();
            var idx = tensor(rows, [lengths.Length, _width - 1, 1], device: u.device).expand(-1, -1, u.shape[2]);
            newHistory = window.gather(1, idx);
        }
        return v;
    }
}
