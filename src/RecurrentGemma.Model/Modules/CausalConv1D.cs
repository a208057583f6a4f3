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
    Tensor? _taps;             // [K, L]: tap j of every channel
    Tensor[] _tap = [];        // row j of _taps, as views made once

    public CausalConv1D(long channels, int width, ScalarType dtype, Device device) : base(nameof(CausalConv1D))
    {
        weight = Param.Empty([channels, 1, width], dtype, device);
        bias = Param.Empty([channels], dtype, device);
        _width = width;
        RegisterComponents();
    }

    /// <summary>[K, L] the taps, tap j of every channel in row j (the CPU step kernel reads them).</summary>
    internal Tensor Taps => _taps ?? throw new InvalidOperationException("the model was not prepared after loading its weights");
    internal Tensor Bias => bias;

    internal void Prepare()
    {
        DisposeTaps();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        _taps = weight.squeeze(1).t().contiguous().DetachFromDisposeScope();
        _tap = Enumerable.Range(0, _width).Select(j => _taps[j].DetachFromDisposeScope()).ToArray();
    }

    /// <param name="u">[B, T, L] inputs of this chunk.</param>
    /// <param name="history">[B, K−1, L] the previous K−1 inputs (zeros for a new sequence).</param>
    /// <param name="historyRows">[B, K−1, L] window rows holding each row's last K−1 valid inputs
    /// (right-padded chunks); null when every row has T tokens.</param>
    /// <param name="newHistory">[B, K−1, L] the last K−1 valid inputs, to store back.</param>
    /// <returns>[B, T, L].</returns>
    /// <remarks>
    /// The sum is K shifted multiply-adds over the window, not an einsum: libtorch turns these
    /// einsums into a batched matmul with one tiny product per channel, which measured 10–16 ms
    /// per layer for a 512-token chunk and ~0.2 ms per decode step (2B width, one thread) against
    /// 0.7–1.4 ms and ~0.01 ms this way (docs/benchmarks.md, issue #9). In bf16 each multiply-add
    /// rounds once, as the reference's own loop over the taps does.
    /// </remarks>
    public Tensor Forward(Tensor u, Tensor history, Tensor? historyRows, out Tensor newHistory)
    {
        long t = u.size(1);
        int last = _width - 1;
        var window = cat([history, u], 1);                                   // [B, K−1+T, L]
        newHistory = historyRows is null ? window.narrow(1, t, _width - 1) : window.gather(1, historyRows);
        if (t == 1 && window.dtype == ScalarType.Float32)
        {
            // A float32 decode step: the window is exactly the K taps' inputs, so one product and
            // one sum over the taps replace K multiply-adds (3 ops instead of 6 per step and layer,
            // what a GPU launches; the CPU's small steps take RecurrentStepRows instead). The
            // window stays as it is: newHistory is a view of it. Not in bf16, where the tensor
            // path and RecurrentStepRows round after every multiply-add and this would not.
            return window.mul(Taps).sum(1, keepdim: true).add_(bias, Scalars.One);
        }
        var v = window.narrow(1, last, t) * _tap[last];                      // tap K−1: the current token
        for (int j = 0; j < last; j++) v.addcmul_(window.narrow(1, j, t), _tap[j], Scalars.One);
        v.add_(bias, Scalars.One);
        return v;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) DisposeTaps();
        base.Dispose(disposing);
    }

    void DisposeTaps()
    {
        foreach (var tap in _tap) tap.Dispose();
        _tap = [];
        _taps?.Dispose();
    }
}
