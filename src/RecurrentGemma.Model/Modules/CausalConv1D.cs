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
    Tensor? _taps;             // [K, L]: tap j of every channel, for a decode step
    Tensor? _tapsByChannel;    // [L, K]: the same, for unfolded chunks

    public CausalConv1D(long channels, int width, ScalarType dtype, Device device) : base(nameof(CausalConv1D))
    {
        weight = Param.Empty([channels, 1, width], dtype, device);
        bias = Param.Empty([channels], dtype, device);
        _width = width;
        RegisterComponents();
    }

    internal void Prepare()
    {
        _taps?.Dispose(); _tapsByChannel?.Dispose();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        _tapsByChannel = weight.squeeze(1).contiguous().DetachFromDisposeScope();
        _taps = weight.squeeze(1).t().contiguous().DetachFromDisposeScope();
    }

    /// <param name="u">[B, T, L] inputs of this chunk.</param>
    /// <param name="history">[B, K−1, L] the previous K−1 inputs (zeros for a new sequence).</param>
    /// <param name="historyRows">[B, K−1, L] window rows holding each row's last K−1 valid inputs
    /// (right-padded chunks); null when every row has T tokens.</param>
    /// <param name="newHistory">[B, K−1, L] the last K−1 valid inputs, to store back.</param>
    /// <returns>[B, T, L], or [B, L] when T = 1 (the caller knows T; one view fewer per step).</returns>
    public Tensor Forward(Tensor u, Tensor history, Tensor? historyRows, out Tensor newHistory)
    {
        long t = u.shape[1];
        var window = cat([history, u], 1);                                   // [B, K−1+T, L]
        Tensor v = t == 1
            ? einsum("bkl,kl->bl", window, _taps!)                            // [B, L] (a decode step)
            : einsum("btlk,lk->btl", window.unfold(1, _width, 1), _tapsByChannel!);   // windows [B, T, L, K]
        v.add_(bias, Scalars.One);
        newHistory = historyRows is null ? window.narrow(1, t, _width - 1) : window.gather(1, historyRows);
        return v;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _taps?.Dispose(); _tapsByChannel?.Dispose(); }
        base.Dispose(disposing);
    }
}
