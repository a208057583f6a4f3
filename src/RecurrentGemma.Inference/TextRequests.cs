using RecurrentGemma.Engine;
using RecurrentGemma.Text;

namespace RecurrentGemma.Inference;

/// <summary>A protocol-free text generation request: a chat or a raw prompt, and how to sample.</summary>
public sealed record TextGenerationRequest
{
    /// <summary>Chat messages (rendered with the Gemma template), or null for a raw prompt.</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    /// <summary>The last message is the start of the answer, which the model continues (vLLM's
    /// continue_final_message); the text returned is the continuation.</summary>
    public bool ContinueFinalMessage { get; init; }
    /// <summary>Raw prompt text (BOS is prepended), used when <see cref="Messages"/> is null.</summary>
    public string? Prompt { get; init; }
    /// <summary>A raw prompt as token ids, read exactly as given (no BOS added), used when
    /// <see cref="Messages"/> and <see cref="Prompt"/> are null.</summary>
    public IReadOnlyList<int>? PromptTokenIds { get; init; }
    public SamplingParams Sampling { get; init; } = new();
    public int MaxTokens { get; init; } = 256;
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>More ids that end a choice, beside the model's own end ids (vLLM's stop_token_ids).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Generate past the model's end ids (&lt;eos&gt;, &lt;end_of_turn&gt;) until max tokens
    /// or a <see cref="StopTokenIds"/> id (vLLM's ignore_eos, for benchmarks).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>No end id, stop id or stop string ends a choice before it has this many tokens (vLLM's min_tokens).</summary>
    public int MinTokens { get; init; }
    /// <summary>The stop string that ends a choice stays at the end of its text (vLLM's include_stop_str_in_output).</summary>
    public bool IncludeStopString { get; init; }
    public int N { get; init; } = 1;
    public bool Logprobs { get; init; }
    public int TopLogprobs { get; init; }
    public string? SessionId { get; init; }
    public string? Owner { get; init; }
    /// <summary>Completions "echo": prepend the prompt to the returned text.</summary>
    public bool Echo { get; init; }
    /// <summary>Also report every prompt token with its log-probability given the tokens before it
    /// (and <see cref="TopLogprobs"/> alternatives): completions' echo with logprobs. The prompt
    /// is then computed whole (no parked state is continued); <see cref="MaxTokens"/> may be 0.</summary>
    public bool PromptLogprobs { get; init; }
    /// <summary>Structured output: the text must be JSON of this form (stop strings then do not apply).</summary>
    public Constraints.OutputFormat? Format { get; init; }
    /// <summary>Tools offered to the model (null: none, or tool_choice none). The answer is then
    /// calls in <see cref="ToolFormat"/> (or, with tool_choice auto, text).</summary>
    public ToolPrompt? Tools { get; init; }
    /// <summary>Continue a copy of the state parked under this session (a stored response); the
    /// new state parks under <see cref="SessionId"/>. See <see cref="GenerationRequest.ParentSessionId"/>.</summary>
    public string? ParentSessionId { get; init; }
    /// <summary>Also keep the state at the prompt's end (see <see cref="GenerationRequest.SnapshotPrompt"/>).</summary>
    public bool SnapshotPrompt { get; init; } = true;
    /// <summary>False: nothing is parked after the answer (a response with store: false).</summary>
    public bool KeepState { get; init; } = true;
    /// <summary>Admission order while requests wait: lower first (vLLM's priority; default 0).</summary>
    public int Priority { get; init; }
    /// <summary>Only these ids may be sampled (vLLM's allowed_token_ids); null: any.</summary>
    public IReadOnlyList<int>? AllowedTokenIds { get; init; }
    /// <summary>Words never to be written (vLLM's bad_words); null: none.</summary>
    public IReadOnlyList<string>? BadWords { get; init; }
}

/// <summary>One token's log-probability with its text, for OpenAI's logprobs objects.</summary>
public sealed record TokenLogprobText(string Token, byte[] Bytes, float Logprob, IReadOnlyList<(string Token, byte[] Bytes, float Logprob)> Top);

/// <summary>What a running generation produces, in order.</summary>
public abstract record TextEvent;
/// <summary>New text of choice <see cref="Index"/> (never half a character, never part of a stop string).</summary>
public sealed record TextDelta(int Index, string Text, IReadOnlyList<TokenLogprobText> Logprobs) : TextEvent
{
    /// <summary>The sampled ids this delta completes, in order (a token whose text is held back —
    /// half a character, a possible stop string — comes with the delta that shows it).</summary>
    public IReadOnlyList<int> TokenIds { get; init; } = [];
}
/// <summary>The prompt's tokens of choice <see cref="Index"/>, with their log-probabilities (the
/// first token has none); before any <see cref="TextDelta"/> of that choice.</summary>
public sealed record PromptLogprobs(int Index, IReadOnlyList<PromptTokenLogprob> Tokens) : TextEvent;
/// <summary>One prompt token: its text, and (except for the first) its log-probability and alternatives.</summary>
public sealed record PromptTokenLogprob(string Token, float? Logprob, IReadOnlyList<(string Token, byte[] Bytes, float Logprob)>? Top);
/// <summary>Choice <see cref="Index"/> ended: "stop" or "length".</summary>
public sealed record ChoiceFinished(int Index, string FinishReason) : TextEvent
{
    /// <summary>Every id the choice sampled (stop ids excluded): what a stored transcript keeps.</summary>
    public IReadOnlyList<int> TokenIds { get; init; } = [];
}
/// <summary>Last event: token counts.</summary>
public sealed record UsageReport(int PromptTokens, int CompletionTokens, int CachedTokens) : TextEvent;

/// <summary>The request is invalid; names the field (HTTP 400 invalid_request_error).</summary>
public sealed class InvalidRequestException(string message, string? param, string? code = null) : Exception(message)
{
    public string? Param { get; } = param;
    public string? Code { get; } = code;
}

/// <summary>Generation failed after it started (sent as an error event on a stream).</summary>
public sealed class GenerationFailedException(string message) : Exception(message);
