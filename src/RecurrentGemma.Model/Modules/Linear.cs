using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// y = x·Wᵀ + b with the Hugging Face layout W: [out, in]. Unlike nn.Linear it allocates its
/// parameters uninitialised (a checkpoint or <see cref="RandomWeights"/> fills them):
/// initialising 2.7 billion weights only to overwrite them costs seconds.
/// </summary>
public sealed class Linear : nn.Module
{
    readonly Parameter weight;
    readonly Parameter? bias;

    public Linear(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device device) : base(nameof(Linear))
    {
        weight = Param.Empty([outFeatures, inFeatures], dtype, device);
        bias = hasBias ? Param.Empty([outFeatures], dtype, device) : null;
        RegisterComponents();
    }

    /// <summary>A projection whose parameters are views into a fused tensor (see <see cref="FusedLinear"/>).</summary>
    internal Linear(Tensor weightView, Tensor? biasView) : base(nameof(Linear))
    {
        weight = new Parameter(weightView, requires_grad: false);
        bias = biasView is null ? null : new Parameter(biasView, requires_grad: false);
        RegisterComponents();
    }

    /// <summary>
    /// Whether CPU bf16 matmuls of many rows run as float32 on up-cast copies (one extra pass over
    /// the weight): null (default) lets <see cref="Bf16Upcast"/> time both on this machine the first
    /// time one comes by; true or false pins it (benchmarks, tests).
    /// </summary>
    public static bool? UpcastBf16OnCpu { get; set; }

    /// <summary>Fewest rows of x a pinned up-cast applies to (below, the small-batch paths serve).</summary>
    public const long UpcastRowsOnCpu = 32;

    public Tensor Forward(Tensor x) => Apply(x, weight, bias);

    /// <summary>Its weight and bias, for a pass that picks the kernel itself (<see cref="RowExactForward"/>).</summary>
    internal Projection AsProjection => new(weight, bias);

    internal static Tensor Apply(Tensor x, Tensor weight, Tensor? bias)
    {
        if (BatchInvariance.TakesProjection(x, weight, bias)) return SimdGemv.Linear(x, weight, bias);   // up to 16 rows: one summation order per row, whatever the row count
        if (Bf16Gemm.Applies(x, weight, bias)) return Bf16Gemm.Linear(x, weight, bias);   // 17+ rows where it measured faster than the paths below
        if (weight.dtype == ScalarType.BFloat16 && CpuPaths.On(weight) && Upcasts(x.numel() / x.size(-1)))
            return Bf16Upcast.Upcast(x, weight, bias);
        if (F32Gemm.Applies(x, weight, bias)) return F32Gemm.Linear(x, weight, bias);   // 17+ rows where it measured faster than the paths below
        if (SimdGemv.Applies(x, weight, bias)) return SimdGemv.Linear(x, weight, bias);
        return SplitGemv.Applies(x, weight) ? SplitGemv.Linear(x, weight, bias) : nn.functional.linear(x, weight, bias);
    }

    /// <summary>Whether a CPU bf16 matmul of this many rows of x runs on float32 copies.</summary>
    internal static bool Upcasts(long rows) => rows >= UpcastRowsOnCpu && (UpcastBf16OnCpu ?? rows >= Bf16Upcast.FromRows);
}

/// <summary>
/// Projections that read the same input, stored as one [Σ out, in] weight (and bias) so one
/// matmul computes them all. Each part is a <see cref="Linear"/> whose parameters are row views
/// of the fused tensors: they keep the checkpoint's names and shapes, the loader writes straight
/// into them, and no weight exists twice.
/// </summary>
internal sealed class FusedLinear : IDisposable
{
    readonly Tensor _weight;
    readonly Tensor? _bias;
    readonly Linear[] _parts;

    public FusedLinear(long inFeatures, long[] outFeatures, bool hasBias, ScalarType dtype, Device device)
    {
        long total = outFeatures.Sum();
        _weight = empty([total, inFeatures], dtype, device).DetachFromDisposeScope();
        _bias = hasBias ? empty([total], dtype, device).DetachFromDisposeScope() : null;
        _parts = new Linear[outFeatures.Length];
        long at = 0;
        for (int i = 0; i < outFeatures.Length; i++)
        {
            _parts[i] = new Linear(_weight.narrow(0, at, outFeatures[i]), _bias?.narrow(0, at, outFeatures[i]));
            at += outFeatures[i];
        }
    }

    public Linear Part(int i) => _parts[i];

    public Tensor Forward(Tensor x) => Linear.Apply(x, _weight, _bias);

    /// <summary>The fused weight and bias, for a pass that picks the kernel itself (<see cref="RowExactForward"/>).</summary>
    public Projection AsProjection => new(_weight, _bias);

    public void Dispose()
    {
        _weight.Dispose();
        _bias?.Dispose();
    }
}

/// <summary>A projection's weight ([out, in]) and bias, as a block hands them to the forward that runs it.</summary>
internal readonly record struct Projection(Tensor Weight, Tensor? Bias)
{
    /// <summary>Through the kernel <see cref="Linear"/> chooses for this many rows.</summary>
    public Tensor Apply(Tensor x) => Linear.Apply(x, Weight, Bias);
}

/// <summary>Parameter construction shared by the modules.</summary>
public static class Param
{
    public static Parameter Empty(long[] shape, ScalarType dtype, Device device) =>
        new(empty(shape, dtype, device), requires_grad: false);
}
