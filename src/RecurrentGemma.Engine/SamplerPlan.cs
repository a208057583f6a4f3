using RecurrentGemma.Model;

namespace RecurrentGemma.Engine;

/// <summary>Per-row input to the sampler: its parameters, its uniform draw and its token history.</summary>
/// <param name="Mask">Allowed ids (a bit per id) of a constrained choice, computed in the
/// background while the forward runs; null: every id.</param>
/// <param name="Suppressed">Ids this row may not sample this step (its stop ids before min_tokens):
/// they ride the logit_bias path with −∞.</param>
internal sealed record SamplingRow(SamplingParams Params, double Uniform, IReadOnlyList<int> Prompt, IReadOnlyList<int> Generated,
    int TopLogprobs, bool Logprobs, int? SampleableVocab = null, Task<ulong[]>? Mask = null, IReadOnlyCollection<int>? Suppressed = null);

/// <summary>What at least one row of a sampling pass asks for; the pass skips the rest.</summary>
[Flags]
internal enum SamplerNeeds
{
    None = 0, Logprobs = 1, Sampled = 2, TopK = 4, TopP = 8, MinP = 16, VocabLimit = 32, Bias = 64, Counts = 128, Repetition = 256, Masked = 512, Greedy = 1024,
    /// <summary>Steps that change the logits in place (and so need a copy of the forward's output).</summary>
    InPlace = VocabLimit | Bias | Counts | Repetition | Masked,
}

/// <summary>The host half of one batched sampling pass: per-row parameters as segments of the step buffer.</summary>
internal sealed class SamplerPlan
{
    public required int Rows { get; init; }
    public required int Vocab { get; init; }
    public required int MaxTop { get; init; }
    public required int MaxTopK { get; init; }
    public required SamplerNeeds Needs { get; init; }
    public bool Has(SamplerNeeds n) => (Needs & n) != 0;
    /// <summary>Penalties as sparse edits, one per distinct (row, id): the value presence/frequency
    /// add to it, and the repetition factor of a seen id.</summary>
    public StepBuffer.Segment Params, BiasIndex, BiasValue, CountIndex, CountValue, SeenIndex, SeenValue, LogitRows;
    /// <summary>Per row, its constraint's mask (null for free rows); uploaded at sampling time.</summary>
    public IReadOnlyList<Task<ulong[]>?> Masks { get; init; } = [];
}
