namespace RecurrentGemma.Engine;

/// <summary>How to pick each next token. Defaults give plain sampling at temperature 1.</summary>
public sealed record SamplingParams
{
    /// <summary>0 = greedy (argmax).</summary>
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    /// <summary>0 = off.</summary>
    public int TopK { get; init; }
    public float MinP { get; init; }
    /// <summary>OpenAI: subtract once from every token already generated.</summary>
    public float PresencePenalty { get; init; }
    /// <summary>OpenAI: subtract per occurrence in the generated tokens.</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>Hugging Face / vLLM: divide positive (multiply negative) logits of tokens seen in prompt or output; 1 = off.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>Same seed, same tokens — alone or batched with others.</summary>
    public long? Seed { get; init; }

    public static SamplingParams Greedy { get; } = new() { Temperature = 0 };

    internal bool IsGreedy => Temperature <= 0;
    internal bool HasPenalties => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1;
}

/// <summary>One generation request, in token ids.</summary>
public sealed record GenerationRequest
{
    public required IReadOnlyList<int> PromptTokens { get; init; }
    public SamplingParams Sampling { get; init; } = new();
    /// <summary>0: prefill only (with <see cref="PromptLogprobs"/>, to score a prompt).</summary>
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>Ids that end a choice without being emitted (Gemma: &lt;eos&gt; 1, &lt;end_of_turn&gt; 107).</summary>
    public IReadOnlySet<int> StopTokenIds { get; init; } = new HashSet<int>();
    /// <summary>No stop id is sampled before a choice has this many tokens (vLLM's min_tokens):
    /// their logits are −∞ until then. Not with a <see cref="Constraint"/>, which decides itself
    /// where an answer may end.</summary>
    public int MinNewTokens { get; init; }
    /// <summary>Choices sampled from one prefill (the state is forked).</summary>
    public int N { get; init; } = 1;
    public bool Logprobs { get; init; }
    /// <summary>0…20 alternatives per position (requires <see cref="Logprobs"/>).</summary>
    public int TopLogprobs { get; init; }
    /// <summary>Report each prompt token's log-probability given the tokens before it, with this
    /// many (0–20) alternatives (a <see cref="PromptLogprobsEvent"/> before the first token);
    /// null: off. Every position must then be computed, so the request never continues a parked
    /// state, and its prompt runs in chunks of its own (see <see cref="EngineOptions.ScoredChunkTokens"/>).</summary>
    public int? PromptLogprobs { get; init; }
    /// <summary>Admission order among waiting requests: lower first (vLLM's priority; 0 by
    /// default, so equal priorities are first come, first served). Running sequences are not
    /// preempted.</summary>
    public int Priority { get; init; }
    /// <summary>Park and continue this conversation's state under this id.</summary>
    public string? SessionId { get; init; }
    /// <summary>Whose request this is (an API key); states are only reused by the same owner.</summary>
    public string? Owner { get; init; }
    /// <summary>Continue a <em>copy</em> of the state parked under this session instead of looking
    /// under <see cref="SessionId"/>: the parent state stays parked as it was, so it can be
    /// continued again (a stored response continued twice branches). The new final state parks
    /// under <see cref="SessionId"/>.</summary>
    public string? ParentSessionId { get; init; }
    /// <summary>Also park a copy of the state at the end of the prompt (the turn boundary, which a
    /// chat client's re-tokenized answer still extends). Off for stored responses: their
    /// continuations always extend the final state.</summary>
    public bool SnapshotPrompt { get; init; } = true;
    /// <summary>False: the finished state is freed, not parked (a response with store: false).</summary>
    public bool KeepState { get; init; } = true;
    /// <summary>Ids at or above this are never sampled (a tokenizer smaller than the model's
    /// padded vocabulary could not show them). Null: the whole vocabulary.</summary>
    public int? SampleableVocab { get; init; }
    /// <summary>Constrains what each choice may generate (a grammar); null: free text.</summary>
    public ITokenConstraint? Constraint { get; init; }
}

public enum FinishReason { Stop, Length, Cancelled }

/// <summary>Log-probability of a chosen token, with the most likely alternatives.</summary>
public sealed record TokenLogprob(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> Top);

/// <summary>What the engine reports for one request, in order.</summary>
public abstract record EngineEvent;
/// <summary>A generated token of choice <see cref="Index"/> (stop ids are never reported as tokens).</summary>
public sealed record TokenEvent(int Index, int TokenId, TokenLogprob? Logprob) : EngineEvent;
/// <summary>The prompt's log-probabilities: entry j is prompt token j + 1 given tokens 0…j (the
/// first token has none). Once per request, before any <see cref="TokenEvent"/>.</summary>
public sealed record PromptLogprobsEvent(IReadOnlyList<TokenLogprob> Logprobs) : EngineEvent;
/// <summary>Choice <see cref="Index"/> ended.</summary>
public sealed record FinishedEvent(int Index, FinishReason Reason) : EngineEvent;
/// <summary>The last event: token counts for the whole request.</summary>
public sealed record UsageEvent(int PromptTokens, int CompletionTokens, int CachedTokens) : EngineEvent;
/// <summary>The engine failed this request (the stream ends after it).</summary>
public sealed record ErrorEvent(string Message) : EngineEvent;

/// <summary>The request queue is full: try again later (HTTP 429).</summary>
public sealed class EngineOverloadedException(string message) : Exception(message);

/// <summary>The prompt is longer than the configured maximum (HTTP 400 context_length_exceeded).</summary>
public sealed class ContextTooLongException(int promptTokens, int maxPromptTokens)
    : Exception($"the prompt has {promptTokens} tokens, more than the maximum of {maxPromptTokens}")
{
    public int PromptTokens { get; } = promptTokens;
    public int MaxPromptTokens { get; } = maxPromptTokens;
}

/// <summary>A request the engine cannot run as given; names the field (HTTP 400).</summary>
public sealed class InvalidGenerationRequestException(string message, string param) : Exception(message)
{
    public string Param { get; } = param;
}

/// <summary>The engine is stopping or stopped (HTTP 503).</summary>
public sealed class EngineStoppedException() : Exception("the engine is shutting down");
