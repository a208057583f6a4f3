using RecurrentGemma.Server.OpenAi;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace RecurrentGemma.Server.Responses;

// The Responses API's shapes (POST/GET/DELETE /v1/responses), snake_case on the wire. Fields
// that take several JSON shapes (input, content, tools, tool_choice) arrive as JsonElement and
// are checked by ResponseInput / ResponseRequestValidation, so each error names its path.

/// <summary>POST /v1/responses body.</summary>
public sealed class CreateResponseRequest
{
    /// <summary>Model id (see GET /v1/models). Optional: the served model.</summary>
    public string? Model { get; set; }
    /// <summary>A string (one user message) or a list of items: messages (roles user, system,
    /// developer, assistant; content a string or input_text / output_text parts),
    /// function_call and function_call_output.</summary>
    public JsonElement? Input { get; set; }
    /// <summary>A system message for this response only (a continuation does not inherit it).</summary>
    public string? Instructions { get; set; }
    /// <summary>Continue this stored response: its conversation's state is continued, so only the new input is prefilled.</summary>
    public string? PreviousResponseId { get; set; }
    /// <summary>Keep the response (transcript and state) to be retrieved or continued; default true.</summary>
    public bool? Store { get; set; }
    public int? MaxOutputTokens { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public bool? Stream { get; set; }
    public Dictionary<string, string>? Metadata { get; set; }
    public string? User { get; set; }
    /// <summary>Only "disabled": the conversation is never cut silently.</summary>
    public string? Truncation { get; set; }
    public ResponseTextDto? Text { get; set; }
    public JsonElement? Tools { get; set; }
    public JsonElement? ToolChoice { get; set; }
    public bool? ParallelToolCalls { get; set; }
    /// <summary>Extension: same seed, same text.</summary>
    public long? Seed { get; set; }
    /// <summary>Extension: keep only the k most likely tokens.</summary>
    public int? TopK { get; set; }
    /// <summary>Run without the request waiting: the response comes back queued, GET polls it,
    /// POST …/cancel stops it; with stream the events come as they are made and GET with
    /// stream=true and starting_after resumes them. Needs store.</summary>
    public bool? Background { get; set; }
    /// <summary>Run in this conversation (an id, or {"id": …}; see /v1/conversations): its items come
    /// before the input, and the input and the answer are added to it. Not with previous_response_id.</summary>
    public JsonElement? Conversation { get; set; }
    /// <summary>Extra output to include; "message.output_text.logprobs" adds each output token's
    /// log probability (the other values OpenAI defines name outputs this server never makes).</summary>
    public JsonElement? Include { get; set; }
    /// <summary>0–20 most likely alternatives per token, with include "message.output_text.logprobs".</summary>
    public int? TopLogprobs { get; set; }
    /// <summary>auto/default, flex (waits behind default requests) or priority (ahead of them).</summary>
    public string? ServiceTier { get; set; }
    /// <summary>Refused: a prompt template stored on OpenAI's platform, which this server cannot read.</summary>
    public JsonElement? Prompt { get; set; }
    /// <summary>Refused: compacting the conversation would invalidate its stored state (as truncation "auto" would).</summary>
    public JsonElement? ContextManagement { get; set; }
}

public sealed class ResponseTextDto
{
    public ResponseTextFormatDto? Format { get; set; }
}

/// <summary>text, json_object, or json_schema with name, schema, strict, description (flat, unlike chat).</summary>
public sealed class ResponseTextFormatDto
{
    public string? Type { get; set; }
    public string? Name { get; set; }
    public string? Description { get; set; }
    public JsonElement? Schema { get; set; }
    public bool? Strict { get; set; }
}

/// <summary>The response object: what POST returns, GET reads, and the stream's lifecycle events carry.</summary>
public sealed record ResponseObject
{
    public required string Id { get; init; }
    public string Object { get; init; } = "response";
    public required long CreatedAt { get; init; }
    /// <summary>queued (background, not started), in_progress, completed, incomplete, failed or cancelled (background).</summary>
    public required string Status { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public ResponseErrorDto? Error { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public IncompleteDetailsDto? IncompleteDetails { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? Instructions { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? MaxOutputTokens { get; init; }
    public required string Model { get; init; }
    public List<ResponseItemDto> Output { get; init; } = [];
    /// <summary>All output_text joined (the SDKs' convenience, also sent for curl users).</summary>
    public string OutputText { get; init; } = "";
    public bool ParallelToolCalls { get; init; } = true;
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? PreviousResponseId { get; init; }
    public bool Store { get; init; } = true;
    public float Temperature { get; init; } = 1;
    public float TopP { get; init; } = 1;
    /// <summary>{"format": {...}} as requested (type text by default).</summary>
    public JsonElement Text { get; init; } = Json.TextFormat;
    public JsonElement ToolChoice { get; init; } = Json.Auto;
    public JsonElement Tools { get; init; } = Json.EmptyArray;
    public string Truncation { get; init; } = "disabled";
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public ResponseUsageDto? Usage { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? User { get; init; }
    public Dictionary<string, string> Metadata { get; init; } = [];
    /// <summary>As requested (left out when not).</summary>
    public int? TopLogprobs { get; init; }
    /// <summary>The tier the response ran in: default, flex or priority.</summary>
    public string ServiceTier { get; init; } = "default";
    /// <summary>Whether it ran in the background (background: true).</summary>
    public bool Background { get; init; }
    /// <summary>The conversation it ran in (left out when none).</summary>
    public ConversationRefDto? Conversation { get; init; }
}

static class Json
{
    public static readonly JsonElement Auto = JsonDocument.Parse("\"auto\"").RootElement.Clone();
    public static readonly JsonElement EmptyArray = JsonDocument.Parse("[]").RootElement.Clone();
    public static readonly JsonElement TextFormat = JsonDocument.Parse("{\"format\":{\"type\":\"text\"}}").RootElement.Clone();
    public static JsonElement WithFormat(JsonElement format) =>
        JsonSerializer.SerializeToElement(new Dictionary<string, JsonElement> { ["format"] = format }, ResponsesJson.Default.DictionaryStringJsonElement);
    public static readonly JsonElement True = JsonDocument.Parse("true").RootElement.Clone();
    public static readonly JsonElement False = JsonDocument.Parse("false").RootElement.Clone();
}

public sealed record ResponseErrorDto(string Code, string Message);
public sealed record IncompleteDetailsDto(string Reason);
public sealed record ResponseUsageDto(int InputTokens, InputTokensDetailsDto InputTokensDetails, int OutputTokens, OutputTokensDetailsDto OutputTokensDetails, int TotalTokens);
public sealed record InputTokensDetailsDto(int CachedTokens);
public sealed record OutputTokensDetailsDto(int ReasoningTokens);

/// <summary>
/// One item, input or output: a message (role, content parts), a function_call (call_id, name,
/// arguments) or a function_call_output (call_id, output). Unused fields are left out.
/// </summary>
public sealed record ResponseItemDto
{
    public required string Type { get; init; }
    public required string Id { get; init; }
    public string? Status { get; init; }
    public string? Role { get; init; }
    public List<ResponseContentPartDto>? Content { get; init; }
    public string? CallId { get; init; }
    public string? Name { get; init; }
    public string? Arguments { get; init; }
    public string? Output { get; init; }
}

/// <summary>input_text (user, system, developer) or output_text (assistant; with annotations and
/// logprobs, which are chat's token logprob objects: token, logprob, bytes, top_logprobs).</summary>
public sealed record ResponseContentPartDto
{
    public required string Type { get; init; }
    public required string Text { get; init; }
    public List<JsonElement>? Annotations { get; init; }
    public List<ChatTokenLogprobDto>? Logprobs { get; init; }

    public static ResponseContentPartDto OutputText(string text, List<ChatTokenLogprobDto>? logprobs = null) =>
        new() { Type = "output_text", Text = text, Annotations = [], Logprobs = logprobs ?? [] };
}

/// <summary>GET /v1/responses/{id}/input_items: a page of items, as OpenAI's lists are.</summary>
public sealed record ResponseItemListDto(string Object, List<ResponseItemDto> Data,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FirstId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? LastId, bool HasMore);

public sealed record ResponseDeletedDto(string Id, string Object, bool Deleted);

/// <summary>One streamed event (its name is also the SSE "event:" line); unused fields are left out.</summary>
public sealed record ResponseStreamEvent
{
    public required string Type { get; init; }
    public required int SequenceNumber { get; init; }
    public ResponseObject? Response { get; init; }
    public int? OutputIndex { get; init; }
    public string? ItemId { get; init; }
    public int? ContentIndex { get; init; }
    public ResponseItemDto? Item { get; init; }
    public ResponseContentPartDto? Part { get; init; }
    public string? Delta { get; init; }
    public string? Text { get; init; }
    public string? Name { get; init; }
    public string? Arguments { get; init; }
    public List<ChatTokenLogprobDto>? Logprobs { get; init; }
    public string? Code { get; init; }
    public string? Message { get; init; }
    public string? Param { get; init; }
}

/// <summary>What the store keeps of a response: the object as returned, and its transcript.</summary>
public sealed record StoredResponse
{
    public required ResponseObject Response { get; init; }
    /// <summary>The conversation before the answer, oldest first: the ancestors' items (inputs and
    /// outputs; never their instructions) and this response's own input.</summary>
    public required List<ResponseItemDto> Context { get; init; }
    /// <summary>How many of <see cref="Context"/>'s last items are this response's own input.</summary>
    public int OwnInputCount { get; init; }
    /// <summary>Exactly the ids sampled for each output run, keyed by the first output item's id
    /// of that answer (the ancestors' too), so a continuation re-renders the same ids.</summary>
    public Dictionary<string, int[]> SampledIds { get; init; } = [];
    /// <summary>A background response's last sign of life from the server running it (Unix
    /// seconds; renewed while it runs), so that one whose server died is reported failed.</summary>
    public long? AliveAt { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(CreateResponseRequest))]
[JsonSerializable(typeof(ResponseObject))]
[JsonSerializable(typeof(ResponseItemListDto))]
[JsonSerializable(typeof(ResponseDeletedDto))]
[JsonSerializable(typeof(ResponseStreamEvent))]
[JsonSerializable(typeof(StoredResponse))]
[JsonSerializable(typeof(InputTokensDto))]
[JsonSerializable(typeof(Dictionary<string, JsonElement>))]
[JsonSerializable(typeof(string))]
public sealed partial class ResponsesJson : JsonSerializerContext;
