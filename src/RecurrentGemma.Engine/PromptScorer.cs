using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>What one scored prefill chunk asks for: the prompt ids that follow each of its first
/// <see cref="Count"/> positions, and how many alternatives to report per position.</summary>
internal sealed class ScorePlan
{
    public required int Count { get; init; }
    public required int Top { get; init; }
    public required StepBuffer.Segment Targets { get; init; }
    /// <summary>Values this plan adds to the step's download.</summary>
    public int PackedLength => Count * (1 + 2 * Top);
}

/// <summary>
/// Prompt log-probabilities (completions' echo with logprobs, as evaluation harnesses use it):
/// position j of a prefill chunk, run with every position's logits, predicts the prompt's next
/// id; its log-probability and the chunk's top alternatives are packed into the step's one
/// device→host copy beside the sampler's results. The same log-softmax of the same soft-capped
/// logits as a sampled token's reported logprob, so a prompt scored here and the same tokens
/// generated report the same numbers.
/// </summary>
internal static class PromptScorer
{
    public static ScorePlan Plan(StepBuffer buffer, IReadOnlyList<int> targets, int top) => new()
    {
        Count = targets.Count, Top = top,
        Targets = buffer.Add(targets.Select(t => (long)t).ToArray()),
    };

    /// <param name="logits">[1, T, V] float32: every position of the chunk (T ≥ plan.Count).</param>
    /// <returns>[Count logprobs, Count·Top top values, Count·Top top ids] as float64.</returns>
    public static Tensor Score(Tensor logits, ScorePlan plan, StepBuffer buffer)
    {
        var rows = logits.reshape(-1, logits.size(-1)).narrow(0, 0, plan.Count);
        var logp = rows.log_softmax(-1);
        var parts = new List<Tensor> { logp.gather(1, buffer.Long(plan.Targets, plan.Count, 1)).reshape(-1).to(ScalarType.Float64) };
        if (plan.Top > 0)
        {
            var (values, indices) = logp.topk(plan.Top);
            parts.Add(values.reshape(-1).to(ScalarType.Float64));
            parts.Add(indices.reshape(-1).to(ScalarType.Float64));
        }
        return parts.Count == 1 ? parts[0] : cat(parts, 0);
    }

    /// <summary>The host side: one <see cref="TokenLogprob"/> per scored position.</summary>
    public static List<TokenLogprob> Unpack(ReadOnlySpan<double> packed, ScorePlan plan, IReadOnlyList<int> targets)
    {
        int n = plan.Count, k = plan.Top;
        var result = new List<TokenLogprob>(n);
        for (int j = 0; j < n; j++)
        {
            var top = new List<(int, float)>(k);
            for (int i = 0; i < k; i++) top.Add(((int)packed[n + n * k + j * k + i], (float)packed[n + j * k + i]));
            result.Add(new TokenLogprob(targets[j], (float)packed[j], top));
        }
        return result;
    }
}
