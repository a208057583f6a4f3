using System.Text.Json;
using System.Text.RegularExpressions;
using RecurrentGemma.Engine;
using RecurrentGemma.Inference.Constraints;
using RecurrentGemma.Server.OpenAi;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.Responses;

/// <summary>A checked POST /v1/responses: the new input items (with ids) and how to answer.</summary>
public sealed record ValidatedResponseRequest(
    List<ResponseItemDto> Input, string? Instructions, string? PreviousResponseId, bool Store, int MaxOutputTokens, int? RequestedMaxOutputTokens,
    SamplingParams Sampling, bool Stream, Dictionary<string, string> Metadata, string? User, OutputFormat? Format, JsonElement TextFormat,
    ToolPrompt? Tools, JsonElement ToolsJson, JsonElement ToolChoiceJson, bool ParallelToolCalls, bool Logprobs, int? TopLogprobs, string ServiceTier,
    string? ConversationId = null, bool Background = false);

/// <summary>
/// Checks every field of a Responses request and turns <c>input</c> into items. Each failure is a
/// 400 naming the field's path (e.g. "input[2].content[0].type"); what this server cannot do —
/// images, files, built-in tools, truncation "auto" — is refused by name,
/// never silently ignored.
/// </summary>
public static class ResponseRequestValidation
{
    static readonly Regex NamePattern = new("^[a-zA-Z0-9_-]{1,64}$", RegexOptions.CultureInvariant);

    /// <param name="r">The request as read.</param>
    /// <param name="limits">The served model's limits.</param>
    /// <param name="inputRequired">False for counting input tokens, where the conversation or the
    /// previous response may be all there is.</param>
    public static ValidatedResponseRequest Validate(CreateResponseRequest r, ValidationLimits limits, bool inputRequired = true)
    {
        if (r.Model is not null && r.Model != limits.ModelId) throw ApiError.ModelNotFound(r.Model);
        if (r.Background == true && r.Store == false) throw ApiError.Invalid("background responses need store: a background response is read back with GET /v1/responses/{id}.", "background");
        string? conversation = Conversation(r.Conversation);
        if (conversation is not null && r.PreviousResponseId is not null)
            throw ApiError.Invalid("previous_response_id and conversation cannot both be set: continue either a stored response or a conversation.", "conversation");
        if (r.Prompt is { ValueKind: not JsonValueKind.Null })
            throw ApiError.Invalid("prompt (a prompt template stored on OpenAI's platform) is not supported: send instructions and input instead.", "prompt");
        if (r.ContextManagement is { ValueKind: not JsonValueKind.Null })
            throw ApiError.Invalid("context_management is not supported: compacting a conversation would invalidate its stored state, so a conversation that outgrows the context is refused instead.", "context_management");
        if (r.Truncation is not null and not "disabled")
            throw ApiError.Invalid($"truncation '{r.Truncation}' is not supported: only 'disabled'. Dropping the start of a conversation would invalidate its stored state, so a conversation that outgrows the context is refused instead.", "truncation");
        if (r.PreviousResponseId is { } prev && (prev.Length is 0 or > 256))
            throw ApiError.Invalid("previous_response_id must be 1 to 256 characters.", "previous_response_id");
        if (r.Instructions is { Length: > 0 } && r.Instructions.Length > 1_000_000)
            throw ApiError.Invalid("instructions is too long.", "instructions");

        var input = !inputRequired && r.Input is not { ValueKind: not JsonValueKind.Null } ? [] : ResponseInput.Parse(r.Input);
        int? requested = r.MaxOutputTokens;
        int maxTokens = requested ?? Math.Min(limits.DefaultMaxTokens, limits.MaxNewTokens);
        Range(maxTokens, 1, limits.MaxNewTokens, "max_output_tokens");
        float t = r.Temperature ?? 1f;
        Range(t, 0, 2, "temperature");
        float p = r.TopP ?? 1f;
        if (!(p > 0 && p <= 1)) throw ApiError.Invalid($"top_p must be greater than 0 and at most 1, got {p}.", "top_p");
        int k = r.TopK ?? 0;
        if (k < -1) throw ApiError.Invalid($"top_k must be -1 or 0 (off) or a positive number, got {k}.", "top_k");
        var metadata = Metadata(r.Metadata);
        var (format, formatJson) = Format(r.Text?.Format);
        var (tools, toolsJson, choiceJson) = Tools(r.Tools, r.ToolChoice, r.ParallelToolCalls ?? true, limits);
        if (tools is not null && format is not null) throw ApiError.Invalid("text.format json_object or json_schema together with tools is not supported; use one of them.", "text.format");
        bool logprobs = Includes(r.Include);
        if (r.TopLogprobs is { } top && top is < 0 or > 20) throw ApiError.Invalid($"top_logprobs must be between 0 and 20, got {top}.", "top_logprobs");

        return new ValidatedResponseRequest(input, string.IsNullOrWhiteSpace(r.Instructions) ? null : r.Instructions, r.PreviousResponseId, r.Store ?? true,
            maxTokens, requested, new SamplingParams { Temperature = t, TopP = p, TopK = Math.Max(0, k), Seed = r.Seed },
            r.Stream ?? false, metadata, r.User, format, formatJson, tools, toolsJson, choiceJson, r.ParallelToolCalls ?? true, logprobs, r.TopLogprobs, ServiceTiers.Name(r.ServiceTier),
            conversation, r.Background == true);
    }

    /// <summary>conversation: an id, or {"id": …}; null when absent.</summary>
    static string? Conversation(JsonElement? conversation)
    {
        if (conversation is not { ValueKind: not JsonValueKind.Null } c) return null;
        var id = c.ValueKind switch
        {
            JsonValueKind.String => c.GetString(),
            JsonValueKind.Object when c.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.String => i.GetString(),
            JsonValueKind.Object => throw ApiError.Invalid("conversation.id is required (a string).", "conversation.id"),
            _ => throw ApiError.Invalid("conversation must be a conversation id or an object with its id.", "conversation"),
        };
        if (id is not { Length: > 0 and <= 256 }) throw ApiError.Invalid("conversation must be an id of 1 to 256 characters.", "conversation");
        return id;
    }

    /// <summary>OpenAI's metadata: at most 16 pairs, keys up to 64 characters, values up to 512.</summary>
    public static Dictionary<string, string> Metadata(Dictionary<string, string>? metadata)
    {
        metadata ??= [];
        if (metadata.Count > 16) throw ApiError.Invalid("metadata may hold at most 16 pairs.", "metadata");
        foreach (var (key, value) in metadata)
        {
            if (key.Length > 64) throw ApiError.Invalid("metadata keys may be at most 64 characters.", "metadata");
            if (value is null || value.Length > 512) throw ApiError.Invalid($"metadata['{key}'] must be a string of at most 512 characters.", "metadata");
        }
        return metadata;
    }

    // What OpenAI's include accepts. Only the logprobs change anything here: the others name outputs
    // of built-in tools, images and reasoning, which this server never produces, so asking for them
    // is valid and adds nothing (as for a response that made no such call).
    const string LogprobsInclude = "message.output_text.logprobs";
    static readonly string[] KnownIncludes =
    [
        LogprobsInclude, "reasoning.encrypted_content", "message.input_image.image_url", "computer_call_output.output.image_url",
        "file_search_call.results", "web_search_call.results", "web_search_call.action.sources", "code_interpreter_call.outputs",
    ];

    /// <summary>Checks include; true when it asks for the output tokens' logprobs.</summary>
    static bool Includes(JsonElement? include)
    {
        if (include is not { ValueKind: not JsonValueKind.Null } list) return false;
        if (list.ValueKind != JsonValueKind.Array) throw ApiError.Invalid("include must be an array of strings.", "include");
        bool logprobs = false;
        int i = 0;
        foreach (var item in list.EnumerateArray())
        {
            string at = $"include[{i++}]";
            if (item.ValueKind != JsonValueKind.String) throw ApiError.Invalid($"{at} must be a string.", at);
            string value = item.GetString()!;
            if (!KnownIncludes.Contains(value))
                throw ApiError.Invalid($"{at} '{value}' is not a supported value; supported: {string.Join(", ", KnownIncludes)}.", at);
            logprobs |= value == LogprobsInclude;
        }
        return logprobs;
    }

    static (OutputFormat?, JsonElement) Format(ResponseTextFormatDto? f)
    {
        if (f is null) return (null, TypeOnly("text"));
        switch (f.Type)
        {
            case null: throw ApiError.Invalid("text.format.type is required (text, json_object or json_schema).", "text.format.type");
            case "text": return (null, TypeOnly("text"));
            case "json_object": return (new(OutputFormatKind.JsonObject), TypeOnly("json_object"));
            case "json_schema":
                if (f.Name is null || !NamePattern.IsMatch(f.Name)) throw ApiError.Invalid("text.format.name must match ^[a-zA-Z0-9_-]{1,64}$.", "text.format.name");
                if (f.Schema is not { ValueKind: JsonValueKind.Object or JsonValueKind.True } schema)
                    throw ApiError.Invalid("text.format.schema must be a JSON Schema object.", "text.format.schema");
                var echo = new Dictionary<string, JsonElement>
                {
                    ["type"] = Element("json_schema"), ["name"] = Element(f.Name), ["schema"] = schema.Clone(), ["strict"] = (f.Strict ?? false) ? Json.True : Json.False,
                };
                if (f.Description is not null) echo["description"] = Element(f.Description);
                return (new(OutputFormatKind.JsonSchema, schema.Clone(), f.Strict ?? false), JsonSerializer.SerializeToElement(echo, ResponsesJson.Default.DictionaryStringJsonElement));
            default:
                throw ApiError.Invalid($"text.format.type '{f.Type}' is not supported; use text, json_object or json_schema.", "text.format.type");
        }
    }

    /// <summary>Function tools, flat as the Responses API has them: {type: "function", name, description, parameters, strict}.</summary>
    static (ToolPrompt?, JsonElement, JsonElement) Tools(JsonElement? toolsJson, JsonElement? choiceJson, bool parallel, ValidationLimits limits)
    {
        var choice = choiceJson is { ValueKind: not JsonValueKind.Null } c0 ? c0.Clone() : Element("auto");
        if (toolsJson is not { ValueKind: not JsonValueKind.Null } list)
        {
            if (choice.ValueKind != JsonValueKind.String || choice.GetString() is not ("none" or "auto")) throw ApiError.Invalid("tool_choice needs tools.", "tool_choice");
            return (null, Json.EmptyArray, choice);
        }
        if (list.ValueKind != JsonValueKind.Array) throw ApiError.Invalid("tools must be an array.", "tools");
        if (list.GetArrayLength() > limits.MaxTools) throw ApiError.Invalid($"tools may hold at most {limits.MaxTools} tools, got {list.GetArrayLength()}.", "tools");
        var tools = new List<ToolDefinition>();
        int i = 0;
        foreach (var item in list.EnumerateArray())
        {
            string at = $"tools[{i++}]";
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw ApiError.Invalid($"{at}.type is required.", $"{at}.type");
            if (type.GetString() != "function")
                throw ApiError.Invalid($"{at}.type '{type.GetString()}' is not supported: this server runs only function tools (no built-in tools such as web search, file search or code interpreter).", $"{at}.type");
            // The Responses API's function tools are strict unless they say otherwise (chat's are not).
            tools.Add(ToolValidation.Definition(item, at, tools, strictByDefault: true));
        }
        bool required = false;
        string? only = null;
        if (choice.ValueKind == JsonValueKind.String)
        {
            switch (choice.GetString())
            {
                case "none": return (null, list.Clone(), choice);
                case "auto": break;
                case "required": required = true; break;
                default: throw ApiError.Invalid("tool_choice must be none, auto, required or {type: 'function', name}.", "tool_choice");
            }
        }
        else if (choice.ValueKind == JsonValueKind.Object)
        {
            if (!choice.TryGetProperty("type", out var ct) || ct.ValueKind != JsonValueKind.String || ct.GetString() != "function")
                throw ApiError.Invalid("tool_choice.type must be 'function' (other tool choices are not supported).", "tool_choice.type");
            only = choice.TryGetProperty("name", out var nn) && nn.ValueKind == JsonValueKind.String ? nn.GetString() : null;
            if (only is null || tools.All(x => x.Name != only)) throw ApiError.Invalid($"tool_choice names '{only}', which is not among the tools.", "tool_choice.name");
        }
        else throw ApiError.Invalid("tool_choice must be a string or an object.", "tool_choice");
        if (tools.Count == 0) return (null, list.Clone(), choice);
        return (new ToolPrompt(tools, required, only, parallel), list.Clone(), choice);
    }

    static JsonElement Element(string value) => JsonSerializer.SerializeToElement(value, ResponsesJson.Default.String);
    static JsonElement TypeOnly(string type) => JsonSerializer.SerializeToElement(new Dictionary<string, JsonElement> { ["type"] = Element(type) }, ResponsesJson.Default.DictionaryStringJsonElement);

    static void Range(double value, double min, double max, string field)
    {
        if (double.IsNaN(value) || value < min || value > max)
            throw ApiError.Invalid($"{field} must be between {min} and {max}, got {value}.", field);
    }
}
