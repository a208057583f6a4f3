using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Gemma's RMSNorm: x / sqrt(mean(x²) + ε) ⊙ (1 + w). The weight is stored centred on zero, so
/// the gain is 1 + w. Computed in float32 and cast back, so bf16 activations lose nothing here.
/// The float32 gain is derived once from the loaded weight (<see cref="Prepare"/>), not per call.
/// </summary>
public sealed class RmsNorm : nn.Module
{
    readonly Parameter weight;
    readonly double _eps;
    Tensor? _gain;   // (1 + w) in float32, derived after loading

    public RmsNorm(long dim, double eps, ScalarType dtype, Device device) : base(nameof(RmsNorm))
    {
        weight = Param.Empty([dim], dtype, device);
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>Derives the per-call constants from the loaded weight.</summary>
    internal void Prepare()
    {
        _gain?.Dispose();
        using var noGrad = no_grad();
        using (var w32 = weight.to(ScalarType.Float32)) _gain = w32.add(Scalars.One, Scalars.One).DetachFromDisposeScope();
    }

    public Tensor Forward(Tensor x)
    {
        var gain = _gain ?? throw new InvalidOperationException("the model was not prepared after loading its weights");
        if (RmsNormRows.Applies(x, gain)) return RmsNormRows.Forward(x, gain, _eps);
        // mean(x²) as ‖x‖²/D: one reduction instead of a square and a mean.
        long d = x.size(-1);
        if (x.dtype == ScalarType.Float32)
        {
            var r = x.norm(-1, keepdim: true).pow_(Scalars.Two).div_(Scalars.Of(d)).add_(Scalars.Of(_eps), Scalars.One).rsqrt_();
            return (x * r).mul_(gain);
        }
        var x32 = x.to(ScalarType.Float32);
        var r32 = x32.norm(-1, keepdim: true).pow_(Scalars.Two).div_(Scalars.Of(d)).add_(Scalars.Of(_eps), Scalars.One).rsqrt_();
        return x32.mul_(r32).mul_(gain).to(x.dtype);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _gain?.Dispose(); _gain = null; }
        base.Dispose(disposing);
    }
}
