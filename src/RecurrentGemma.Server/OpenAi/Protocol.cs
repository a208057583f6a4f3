using System.Text.Json;
using System.Text.Json.Serialization;

namespace RecurrentGemma.Server.OpenAi;

// OpenAI protocol shapes (https://platform.openai.com/docs/api-reference), snake_case on the wire.
// Fields that take several JSON shapes (stop, content, prompt, logprobs of /v1/completions) arrive
// as JsonElement and are checked by RequestValidation, so every error can name its field.

/// <summary>The fields chat and text completions share.</summary>
public abstract class GenerationRequestBase
{
    /// <summary>Model id (see GET /v1/models). Optional: the served model.</summary>
    public string? Model { get; set; }
    /// <summary>vLLM's beam search switch: refused when true (this server samples; best_of ranks sampled candidates).</summary>
    public bool? UseBeamSearch { get; set; }
    public int? MaxTokens { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public int? N { get; set; }
    /// <summary>A string or up to 4 strings.</summary>
    public JsonElement? Stop { get; set; }
    public long? Seed { get; set; }
    public float? PresencePenalty { get; set; }
    public float? FrequencyPenalty { get; set; }
    public Dictionary<string, float>? LogitBias { get; set; }
    public bool? Stream { get; set; }
    public StreamOptionsDto? StreamOptions { get; set; }
    /// <summary>vLLM's: the answer also carries the prompt's ids (prompt_token_ids) and each
    /// choice's sampled ids (token_ids), so a caller (an RL trainer) need not re-tokenize text.</summary>
    public bool? ReturnTokenIds { get; set; }
    /// <summary>vLLM's: while requests wait for admission, lower priorities go first (default 0).</summary>
    public int? Priority { get; set; }
    /// <summary>vLLM's: only these ids may be sampled.</summary>
    public List<int>? AllowedTokenIds { get; set; }
    /// <summary>vLLM's: words never to be written.</summary>
    public List<string>? BadWords { get; set; }
    /// <summary>OpenAI's: auto/default (priority 0), flex (waits behind default: batch work) or
    /// priority (ahead of default), unless <see cref="Priority"/> is given.</summary>
    public string? ServiceTier { get; set; }
    public string? User { get; set; }
    /// <summary>Extension: keep only the k most likely tokens.</summary>
    public int? TopK { get; set; }
    /// <summary>Extension: drop tokens below min_p × the top probability.</summary>
    public float? MinP { get; set; }
    /// <summary>Extension: Hugging Face-style repetition penalty (1 = off).</summary>
    public float? RepetitionPenalty { get; set; }
    /// <summary>Extension: park and continue this conversation's state (also the X-Session-Id header).</summary>
    public string? SessionId { get; set; }
    /// <summary>Extension (vLLM): more token ids that end a choice, beside the model's end ids.</summary>
    public List<int>? StopTokenIds { get; set; }
    /// <summary>Extension (vLLM): generate past the model's end ids, to max_tokens (benchmarks).</summary>
    public bool? IgnoreEos { get; set; }
    /// <summary>Extension (vLLM): no end id, stop id or stop string ends a choice before this many tokens.</summary>
    public int? MinTokens { get; set; }
    /// <summary>Extension (vLLM): the stop string that ended a choice stays at the end of its text.</summary>
    public bool? IncludeStopStrInOutput { get; set; }
    /// <summary>Extension (vLLM): what the output must be — json (a schema), choice (one of some strings), regex, json_object.</summary>
    public StructuredOutputsDto? StructuredOutputs { get; set; }
    /// <summary>Extension (vLLM, older name of structured_outputs.json): a schema, or a string holding one.</summary>
    public JsonElement? GuidedJson { get; set; }
    /// <summary>Extension (vLLM, older name of structured_outputs.choice).</summary>
    public List<string>? GuidedChoice { get; set; }
    /// <summary>Extension (vLLM, older name of structured_outputs.regex): raw text the whole expression matches.</summary>
    public string? GuidedRegex { get; set; }
    /// <summary>Extension (vLLM): refused with a 400 naming it.</summary>
    public string? GuidedGrammar { get; set; }
}

/// <summary>vLLM's structured_outputs: at most one of its fields.</summary>
public sealed class StructuredOutputsDto
{
    public JsonElement? Json { get; set; }
    public List<string>? Choice { get; set; }
    public string? Regex { get; set; }
    public string? Grammar { get; set; }
    public bool? JsonObject { get; set; }
}

/// <summary>POST /v1/chat/completions body.</summary>
public sealed class ChatCompletionRequest : GenerationRequestBase
{
    /// <summary>The conversation; roles system, developer, user, assistant.</summary>
    public List<ChatMessageDto>? Messages { get; set; }
    public int? MaxCompletionTokens { get; set; }
    public bool? Logprobs { get; set; }
    public int? TopLogprobs { get; set; }
    public ResponseFormatDto? ResponseFormat { get; set; }
    public JsonElement? Tools { get; set; }
    public JsonElement? ToolChoice { get; set; }
    public JsonElement? Functions { get; set; }
    public JsonElement? FunctionCall { get; set; }
    public bool? ParallelToolCalls { get; set; }
    /// <summary>Output kinds asked for: only ["text"] can be served (this model writes text).</summary>
    public List<string>? Modalities { get; set; }
    /// <summary>Audio output parameters: refused (no audio output).</summary>
    public JsonElement? Audio { get; set; }
    /// <summary>Built-in web search: refused (this server has no tools of its own).</summary>
    public JsonElement? WebSearchOptions { get; set; }
    /// <summary>Extension (vLLM): the last message is an assistant message whose text starts the
    /// answer; the model continues it, and the reply holds the continuation.</summary>
    public bool? ContinueFinalMessage { get; set; }
    /// <summary>Extension (vLLM): false only together with continue_final_message.</summary>
    public bool? AddGenerationPrompt { get; set; }
    /// <summary>Keep the completion (with its messages and metadata) for GET /v1/chat/completions.</summary>
    public bool? Store { get; set; }
    /// <summary>Up to 16 pairs kept with a stored completion (and filtered on when listing).</summary>
    public Dictionary<string, string>? Metadata { get; set; }
}

public sealed class ChatMessageDto
{
    public string? Role { get; set; }
    /// <summary>A string, or an array of {type: "text", text} parts.</summary>
    public JsonElement? Content { get; set; }
    public string? Name { get; set; }
    /// <summary>An assistant message's calls: [{id, type: "function", function: {name, arguments}}].</summary>
    public JsonElement? ToolCalls { get; set; }
    /// <summary>A tool message: the call it answers.</summary>
    public string? ToolCallId { get; set; }
    /// <summary>An assistant message that declined (as the OpenAI clients send an earlier answer back): its text.</summary>
    public string? Refusal { get; set; }
}

public sealed class StreamOptionsDto
{
    public bool? IncludeUsage { get; set; }
    /// <summary>vLLM's: with include_usage, every chunk also carries the usage so far.</summary>
    public bool? ContinuousUsageStats { get; set; }
}

/// <summary>text, json_object, or json_schema with {name, schema, strict, description}.</summary>
public sealed class ResponseFormatDto
{
    public string? Type { get; set; }
    public JsonSchemaFormatDto? JsonSchema { get; set; }
}

public sealed class JsonSchemaFormatDto
{
    public string? Name { get; set; }
    public string? Description { get; set; }
    public JsonElement? Schema { get; set; }
    public bool? Strict { get; set; }
}

/// <summary>POST /v1/completions body.</summary>
public sealed class CompletionRequest : GenerationRequestBase
{
    /// <summary>A string, an array of strings, an array of token ids (one prompt, read as given: no BOS
    /// is added), or an array of such arrays; one completion set per prompt.</summary>
    public JsonElement? Prompt { get; set; }
    /// <summary>Number of top alternatives per token (0–20); null: none.</summary>
    public int? Logprobs { get; set; }
    public bool? Echo { get; set; }
    public string? Suffix { get; set; }
    /// <summary>Candidates generated per prompt (n ≤ best_of); the n with the highest log probability per token are returned.</summary>
    public int? BestOf { get; set; }
    /// <summary>Extension: structured output for completions, as in chat (json_object or json_schema).</summary>
    public ResponseFormatDto? ResponseFormat { get; set; }
}

/// <summary>Token counts; prompt_tokens_details is left out of a stream's running counts (vLLM's continuous_usage_stats).</summary>
public sealed record UsageDto(int PromptTokens, int CompletionTokens, int TotalTokens, PromptTokensDetailsDto? PromptTokensDetails);
public sealed record PromptTokensDetailsDto(int CachedTokens);

public sealed record ChatCompletionResponse(string Id, string Object, long Created, string Model, string SystemFingerprint,
    List<ChatChoiceDto> Choices, UsageDto Usage, IReadOnlyList<int>? PromptTokenIds = null, string ServiceTier = "default",
    Dictionary<string, string>? Metadata = null);

public sealed record ChatChoiceDto(int Index, AssistantMessageDto Message,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] ChatLogprobsDto? Logprobs, string FinishReason, IReadOnlyList<int>? TokenIds = null);

public sealed record AssistantMessageDto(string Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Content, List<ToolCallDto>? ToolCalls = null);

public sealed record ToolCallDto(string Id, string Type, FunctionCallDto Function);
public sealed record FunctionCallDto(string Name, string Arguments);
public sealed record ToolCallDeltaDto(int Index, string? Id, string? Type, FunctionDeltaDto Function);
public sealed record FunctionDeltaDto(string? Name, string? Arguments);

public sealed record ChatLogprobsDto(List<ChatTokenLogprobDto> Content);
public sealed record ChatTokenLogprobDto(string Token, float Logprob, int[] Bytes, List<ChatTopLogprobDto> TopLogprobs);
public sealed record ChatTopLogprobDto(string Token, float Logprob, int[] Bytes);

public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, string SystemFingerprint,
    List<ChatChunkChoiceDto> Choices, UsageDto? Usage, IReadOnlyList<int>? PromptTokenIds = null, string ServiceTier = "default");

public sealed record ChatChunkChoiceDto(int Index, DeltaDto Delta,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] ChatLogprobsDto? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason, IReadOnlyList<int>? TokenIds = null);

public sealed record DeltaDto(string? Role, string? Content, List<ToolCallDeltaDto>? ToolCalls = null);

public sealed record CompletionResponse(string Id, string Object, long Created, string Model, string SystemFingerprint,
    List<CompletionChoiceDto> Choices, UsageDto? Usage);

public sealed record CompletionChoiceDto(int Index, string Text,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] CompletionLogprobsDto? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason,
    IReadOnlyList<int>? PromptTokenIds = null, IReadOnlyList<int>? TokenIds = null);

/// <summary>The legacy logprobs object; with echo the prompt's tokens come first, the very first
/// with null (nothing precedes it).</summary>
public sealed record CompletionLogprobsDto(List<string> Tokens, List<float?> TokenLogprobs, List<Dictionary<string, float>?> TopLogprobs, List<int> TextOffset);

/// <summary>A model as OpenAI lists it, with vLLM's root (the model the id serves: here the id
/// itself) and max_model_len (the longest prompt in tokens; clients size their prompts by it).</summary>
public sealed record ModelDto(string Id, string Object, long Created, string OwnedBy, string Root, int MaxModelLen);
public sealed record ModelListDto(string Object, List<ModelDto> Data);

/// <summary>GET /version, as vLLM answers it.</summary>
public sealed record VersionDto(string Version);

/// <summary>POST /tokenize: a prompt or chat messages (rendered with the template).</summary>
public sealed class TokenizeRequest
{
    public string? Model { get; set; }
    public string? Prompt { get; set; }
    public List<ChatMessageDto>? Messages { get; set; }
    /// <summary>Prepend BOS to a plain prompt (default true; chat prompts always start with BOS).</summary>
    public bool? AddSpecialTokens { get; set; }
    /// <summary>As in chat completions: the ids of a conversation whose last message is continued.</summary>
    public bool? ContinueFinalMessage { get; set; }
    public bool? AddGenerationPrompt { get; set; }
}

public sealed record TokenizeResponse(List<int> Tokens, int Count, int MaxModelLen);

public sealed class DetokenizeRequest
{
    public string? Model { get; set; }
    public List<int>? Tokens { get; set; }
}

public sealed record DetokenizeResponse(string Prompt);

/// <summary>OpenAI's error envelope.</summary>
public sealed record ErrorEnvelope(ErrorBody Error);
public sealed record ErrorBody(string Message, string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(TokenizeRequest))]
[JsonSerializable(typeof(DetokenizeRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(ModelListDto))]
[JsonSerializable(typeof(VersionDto))]
[JsonSerializable(typeof(ModelDto))]
[JsonSerializable(typeof(TokenizeResponse))]
[JsonSerializable(typeof(DetokenizeResponse))]
[JsonSerializable(typeof(ErrorEnvelope))]
public sealed partial class OpenAiJson : JsonSerializerContext;
