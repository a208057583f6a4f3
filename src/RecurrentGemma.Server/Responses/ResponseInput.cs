using System.Text.Json;
using RecurrentGemma.Server.OpenAi;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// The Responses API's items, both ways: <c>input</c> (a string or a list of items) → checked
/// items with ids, and a transcript of items → the chat messages the Gemma template renders.
/// </summary>
public static class ResponseInput
{
    static readonly HashSet<string> Roles = ["user", "system", "developer", "assistant"];

    /// <summary>The request's input as items; every id is set (the client's, or a new one).</summary>
    public static List<ResponseItemDto> Parse(JsonElement? input)
    {
        if (input is not { ValueKind: not JsonValueKind.Null } v) throw ApiError.Invalid("input is required.", "input");
        if (v.ValueKind == JsonValueKind.String)
        {
            if (v.GetString()!.Trim().Length == 0) throw ApiError.Invalid("input must not be empty.", "input");
            return [Message("user", [new() { Type = "input_text", Text = v.GetString()! }], null)];
        }
        if (v.ValueKind != JsonValueKind.Array) throw ApiError.Invalid("input must be a string or an array of items.", "input");
        if (v.GetArrayLength() == 0) throw ApiError.Invalid("input must not be empty.", "input");
        var items = new List<ResponseItemDto>();
        int i = 0;
        foreach (var item in v.EnumerateArray()) items.Add(Item(item, $"input[{i++}]", allowReference: true));
        return items;
    }

    /// <summary>An array of items under another field (the Conversations API's "items"), 1 to
    /// <paramref name="max"/> of them (0 allowed when <paramref name="allowEmpty"/>); ids as in
    /// <see cref="Parse"/>, and no id twice in one list.</summary>
    public static List<ResponseItemDto> ParseList(JsonElement list, string field, int max, bool allowEmpty = false)
    {
        if (list.ValueKind != JsonValueKind.Array) throw ApiError.Invalid($"{field} must be an array of items.", field);
        int n = list.GetArrayLength();
        if (n == 0 && !allowEmpty) throw ApiError.Invalid($"{field} must not be empty.", field);
        if (n > max) throw ApiError.Invalid($"{field} may hold at most {max} items, got {n}.", field);
        var items = new List<ResponseItemDto>();
        int i = 0;
        foreach (var item in list.EnumerateArray())
        {
            var parsed = Item(item, $"{field}[{i}]");
            if (items.Any(x => x.Id == parsed.Id)) throw ApiError.Invalid($"{field}[{i}].id '{parsed.Id}' appears twice.", $"{field}[{i}].id");
            items.Add(parsed);
            i++;
        }
        return items;
    }

    /// <param name="item">The item as sent.</param>
    /// <param name="at">Its path, for errors.</param>
    /// <param name="allowReference">An item_reference is kept as such (a response's input resolves
    /// it against what it continues: <see cref="Resolve"/>); elsewhere it is refused.</param>
    static ResponseItemDto Item(JsonElement item, string at, bool allowReference = false)
    {
        if (item.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{at} must be an object.", at);
        string? type = Str(item, "type", at);
        string? id = Str(item, "id", at);
        // An item with a role and no type is a message (the "easy input message" form); one with
        // only an id is a reference to an earlier item (its type may be left out).
        switch (type ?? (item.TryGetProperty("role", out _) ? "message" : id is not null ? "item_reference" : null))
        {
            case "message":
            {
                var role = Str(item, "role", at) ?? throw ApiError.Invalid($"{at}.role is required.", $"{at}.role");
                if (!Roles.Contains(role)) throw ApiError.Invalid($"{at}.role '{role}' is not one of user, system, developer, assistant.", $"{at}.role");
                var content = Content(item, role, at);
                if (role == "user" && content.All(c => c.Text.Trim().Length == 0))
                    throw ApiError.Invalid($"{at}.content must not be empty.", $"{at}.content");
                return Message(role, content, id);
            }
            case "function_call":
            {
                var callId = Str(item, "call_id", at) ?? throw ApiError.Invalid($"{at}.call_id is required.", $"{at}.call_id");
                var name = Str(item, "name", at) ?? throw ApiError.Invalid($"{at}.name is required.", $"{at}.name");
                var args = Str(item, "arguments", at) ?? throw ApiError.Invalid($"{at}.arguments is required (a string of JSON).", $"{at}.arguments");
                try { using var _ = JsonDocument.Parse(args); }
                catch (JsonException) { throw ApiError.Invalid($"{at}.arguments is not valid JSON.", $"{at}.arguments"); }
                return new ResponseItemDto { Type = "function_call", Id = id ?? NewId("fc_"), Status = "completed", CallId = callId, Name = name, Arguments = args };
            }
            case "function_call_output":
            {
                var callId = Str(item, "call_id", at) ?? throw ApiError.Invalid($"{at}.call_id is required.", $"{at}.call_id");
                if (!item.TryGetProperty("output", out var output)) throw ApiError.Invalid($"{at}.output is required.", $"{at}.output");
                string text = output.ValueKind == JsonValueKind.String ? output.GetString()!
                    : output.ValueKind == JsonValueKind.Array ? string.Join("\n", Parts(output, $"{at}.output", "user").Select(p => p.Text))
                    : throw ApiError.Invalid($"{at}.output must be a string.", $"{at}.output");
                return new ResponseItemDto { Type = "function_call_output", Id = id ?? NewId("fco_"), Status = "completed", CallId = callId, Output = text };
            }
            case null: throw ApiError.Invalid($"{at}.type is required.", $"{at}.type");
            case "item_reference" when allowReference:
                return new ResponseItemDto { Type = "item_reference", Id = id ?? throw ApiError.Invalid($"{at}.id is required.", $"{at}.id") };
            case "item_reference":
                throw ApiError.Invalid($"{at}.type 'item_reference' is not supported here: only a response's input may refer to earlier items.", $"{at}.type");
            default:
                throw ApiError.Invalid($"{at}.type '{type}' is not supported: items may be message, function_call or function_call_output (this server runs no built-in tools and reads no images or files).", $"{at}.type");
        }
    }

    static List<ResponseContentPartDto> Content(JsonElement item, string role, string at)
    {
        if (!item.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            throw ApiError.Invalid($"{at}.content is required.", $"{at}.content");
        string textType = role == "assistant" ? "output_text" : "input_text";
        if (content.ValueKind == JsonValueKind.String) return [new() { Type = textType, Text = content.GetString()! }];
        if (content.ValueKind != JsonValueKind.Array) throw ApiError.Invalid($"{at}.content must be a string or an array of parts.", $"{at}.content");
        return Parts(content, $"{at}.content", role);
    }

    static List<ResponseContentPartDto> Parts(JsonElement array, string at, string role)
    {
        var parts = new List<ResponseContentPartDto>();
        int p = 0;
        foreach (var part in array.EnumerateArray())
        {
            string here = $"{at}[{p++}]";
            if (part.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{here} must be an object.", here);
            var type = Str(part, "type", here) ?? throw ApiError.Invalid($"{here}.type is required.", $"{here}.type");
            if (type == "refusal" && role == "assistant")
            {
                // An earlier answer that declined, sent back as it came: what the model said.
                parts.Add(ResponseContentPartDto.OutputText(Str(part, "refusal", here) ?? throw ApiError.Invalid($"{here}.refusal is required.", $"{here}.refusal")));
                continue;
            }
            if (type is not ("input_text" or "output_text"))
                throw ApiError.Invalid($"{here}.type '{type}' is not supported: only input_text and output_text parts (this model reads text only).", $"{here}.type");
            var text = Str(part, "text", here) ?? throw ApiError.Invalid($"{here}.text is required.", $"{here}.text");
            parts.Add(role == "assistant" ? ResponseContentPartDto.OutputText(text) : new() { Type = type, Text = text });
        }
        return parts;
    }

    static string? Str(JsonElement o, string name, string at)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw ApiError.Invalid($"{at}.{name} must be a string.", $"{at}.{name}");
        return v.GetString();
    }

    static ResponseItemDto Message(string role, List<ResponseContentPartDto> content, string? id) =>
        new() { Type = "message", Id = id ?? NewId("msg_"), Status = "completed", Role = role, Content = content };

    /// <summary>
    /// The input with each item_reference replaced by a copy of the item it names, found among the
    /// items the response continues (the conversation's, or the previous response's context and
    /// output); the copy gets an id of its own, since the original stays where it is.
    /// </summary>
    public static List<ResponseItemDto> Resolve(List<ResponseItemDto> input, IReadOnlyList<ResponseItemDto> history)
    {
        if (!input.Any(i => i.Type == "item_reference")) return input;
        var resolved = new List<ResponseItemDto>(input.Count);
        for (int i = 0; i < input.Count; i++)
        {
            if (input[i].Type != "item_reference") { resolved.Add(input[i]); continue; }
            var found = history.FirstOrDefault(h => h.Id == input[i].Id)
                ?? throw ApiError.Invalid($"input[{i}].id '{input[i].Id}' is no item of the conversation or previous response this response continues.", $"input[{i}].id");
            string prefix = found.Type switch { "function_call" => "fc_", "function_call_output" => "fco_", _ => "msg_" };
            resolved.Add(found with { Id = NewId(prefix) });
        }
        return resolved;
    }

    public static string NewId(string prefix) => prefix + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24)).ToLowerInvariant();

    /// <summary>
    /// A transcript as chat messages: instructions first (as a system message), then each item.
    /// Consecutive function calls become one assistant message with tool calls; an answer this
    /// server generated carries its sampled ids, so its turn is exactly what the model produced.
    /// </summary>
    public static List<ChatMessage> ToMessages(string? instructions, IReadOnlyList<ResponseItemDto> items, IReadOnlyDictionary<string, int[]> sampled)
    {
        var messages = new List<ChatMessage>();
        if (instructions is not null) messages.Add(ChatMessage.System(instructions));
        for (int i = 0; i < items.Count; i++)
        {
            var item = items[i];
            switch (item.Type)
            {
                case "message":
                    messages.Add(new ChatMessage(item.Role!, string.Join("\n", item.Content!.Select(c => c.Text)))
                    {
                        SampledIds = item.Role == "assistant" && sampled.TryGetValue(item.Id, out var ids) ? ids : null,
                    });
                    break;
                case "function_call":
                    var calls = new List<ToolCall>();
                    int first = i;
                    for (; i < items.Count && items[i].Type == "function_call"; i++) calls.Add(new ToolCall(items[i].CallId!, items[i].Name!, items[i].Arguments!));
                    i--;
                    messages.Add(new ChatMessage("assistant", "")
                    {
                        ToolCalls = calls, SampledIds = sampled.TryGetValue(items[first].Id, out var callIds) ? callIds : null,
                    });
                    break;
                case "function_call_output":
                    messages.Add(new ChatMessage("tool", item.Output) { ToolCallId = item.CallId });
                    break;
            }
        }
        return messages;
    }
}
