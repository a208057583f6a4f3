using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>
/// Deterministic random weights with sensible scales, for the embedded demo model and the
/// benchmarks (real shapes without a download). Output is meaningless text by construction.
/// </summary>
public static class RandomWeights
{
    public static void Initialize(GriffinForCausalLM model, long seed)
    {
        var c = model.Config;
        using var noGrad = no_grad();
        using var gen = new Generator((ulong)seed, CPU);
        foreach (var (name, p) in model.NamedTensors())
        {
            // Generate on the CPU in float32 (one generator, same numbers on every device), then copy.
            using var scope = NewDisposeScope();
            var values = empty(p.shape, ScalarType.Float32, CPU);
            long fanIn = p.dim() >= 2 ? p.shape[^1] : 1;
            if (name.EndsWith("norm.weight")) values.normal_(0, 0.05, gen);
            else if (name.EndsWith("embed_tokens.weight")) values.normal_(0, 1.0 / Math.Sqrt(c.HiddenSize), gen);
            else if (name.EndsWith("rg_lru.recurrent_param"))
            {
                // σ(−λ) = a uniform in [0.9, 0.999]  ⇒  λ = log((1 − a) / a).
                var a = values.uniform_(0.9, 0.999, gen);
                values = ones_like(a).sub_(a).div_(a).log_();
            }
            else if (name.Contains("gate_weight")) values.normal_(0, 1.0 / Math.Sqrt(p.shape[^1]), gen);
            else if (name.Contains("conv_1d.weight")) values.normal_(0, 1.0 / Math.Sqrt(c.Conv1dWidth), gen);
            else if (name.EndsWith(".bias") || name.EndsWith("gate_bias")) values.normal_(0, 0.02, gen);
            else values.normal_(0, 1.0 / Math.Sqrt(fanIn), gen);
            p.copy_(values);
        }
        model.Prepare();
    }
}
