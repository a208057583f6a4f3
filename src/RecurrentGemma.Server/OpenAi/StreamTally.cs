using RecurrentGemma.Inference;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// What a stream reports beside its text, as vLLM does: the prompt's ids once, on the first chunk
/// (return_token_ids), and the usage so far on every chunk that carries choices
/// (stream_options.continuous_usage_stats). Completion tokens are counted from the ids each
/// delta completes, so the last running count is the final usage's.
/// </summary>
public sealed class StreamTally(ValidatedRequest request, IReadOnlyList<IReadOnlyList<int>> promptIds)
{
    readonly int _prompt = promptIds.Sum(p => p.Count);
    readonly HashSet<int> _promptIdsSent = [];
    int _completion;

    public void Add(TextDelta d) => _completion += d.TokenIds.Count;

    /// <summary>The usage so far for a chunk with this many choices (null: not asked for, or a chunk without choices).</summary>
    public UsageDto? Running(int choices) =>
        request.ContinuousUsage && choices > 0 ? new UsageDto(_prompt, _completion, _prompt + _completion, null) : null;

    /// <summary>The prompt's ids the first time they are asked for <paramref name="choice"/>, then
    /// null: a chat's once, on its first chunk; a completions choice its own prompt's, on its first.</summary>
    public IReadOnlyList<int>? PromptIdsOnce(int choice = 0, int prompt = 0) =>
        request.ReturnTokenIds && _promptIdsSent.Add(choice) ? promptIds[prompt] : null;
}
