using System.Text.Json;
using System.Text.RegularExpressions;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// tools, tool_choice, parallel_tool_calls (and the legacy functions/function_call, mapped onto
/// them) → a <see cref="ToolPrompt"/>; an assistant message's tool_calls → <see cref="ToolCall"/>s.
/// Each failure is a 400 naming the field. The parameters schemas are compiled later by the
/// inference layer, whose errors name their path too.
/// </summary>
public static class ToolValidation
{
    static readonly Regex NamePattern = new("^[a-zA-Z0-9_-]{1,64}$", RegexOptions.CultureInvariant);

    /// <summary>The tools offered, or null when none are (no tools, or tool_choice none).</summary>
    public static ToolPrompt? Tools(ChatCompletionRequest r, ValidationLimits limits)
    {
        bool legacy = r.Tools is not { ValueKind: not JsonValueKind.Null } && r.Functions is { ValueKind: not JsonValueKind.Null };
        if (r.Tools is { ValueKind: not JsonValueKind.Null } && r.Functions is { ValueKind: not JsonValueKind.Null })
            throw ApiError.Invalid("send tools or the legacy functions, not both.", "functions");
        var list = legacy ? r.Functions!.Value : r.Tools is { ValueKind: not JsonValueKind.Null } t ? t : (JsonElement?)null;
        var choice = legacy ? r.FunctionCall : r.ToolChoice;
        string listName = legacy ? "functions" : "tools", choiceName = legacy ? "function_call" : "tool_choice";
        if (list is null)
        {
            if (choice is { ValueKind: not JsonValueKind.Null } c && !(c.ValueKind == JsonValueKind.String && c.GetString() is "none" or "auto"))
                throw ApiError.Invalid($"{choiceName} needs {listName}.", choiceName);
            return null;
        }
        if (list.Value.ValueKind != JsonValueKind.Array) throw ApiError.Invalid($"{listName} must be an array.", listName);
        int count = list.Value.GetArrayLength();
        if (count == 0) throw ApiError.Invalid($"{listName} must not be empty.", listName);
        if (count > limits.MaxTools) throw ApiError.Invalid($"{listName} may hold at most {limits.MaxTools} functions, got {count}.", listName);

        var tools = new List<ToolDefinition>();
        int i = 0;
        foreach (var item in list.Value.EnumerateArray())
        {
            string at = $"{listName}[{i}]";
            JsonElement fn;
            if (legacy) fn = item;
            else
            {
                if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function")
                    throw ApiError.Invalid($"{at}.type must be 'function'.", $"{at}.type");
                if (!item.TryGetProperty("function", out fn) || fn.ValueKind != JsonValueKind.Object)
                    throw ApiError.Invalid($"{at}.function is required.", $"{at}.function");
                at += ".function";
            }
            if (fn.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{at} must be an object.", at);
            tools.Add(Definition(fn, at, tools, strictByDefault: false));
            i++;
        }

        bool required = false;
        string? only = null;
        switch (choice)
        {
            case null or { ValueKind: JsonValueKind.Null }: break;
            case { ValueKind: JsonValueKind.String } c:
                switch (c.GetString())
                {
                    case "none": return null;   // not offered
                    case "auto": break;
                    case "required" when !legacy: required = true; break;
                    default: throw ApiError.Invalid($"{choiceName} must be none, auto{(legacy ? "" : ", required")} or name a function.", choiceName);
                }
                break;
            case { ValueKind: JsonValueKind.Object } c:
                var named = legacy ? c : c.TryGetProperty("function", out var f) ? f : default;
                if (!legacy && (!c.TryGetProperty("type", out var ct) || ct.ValueKind != JsonValueKind.String || ct.GetString() != "function"))
                    throw ApiError.Invalid($"{choiceName}.type must be 'function'.", $"{choiceName}.type");
                only = named.ValueKind == JsonValueKind.Object && named.TryGetProperty("name", out var nn) && nn.ValueKind == JsonValueKind.String ? nn.GetString() : null;
                if (only is null || tools.All(x => x.Name != only))
                    throw ApiError.Invalid($"{choiceName} names '{only}', which is not among the {listName}.", choiceName);
                break;
            default: throw ApiError.Invalid($"{choiceName} must be a string or an object.", choiceName);
        }
        return new ToolPrompt(tools, required, only, r.ParallelToolCalls ?? true);
    }

    /// <summary>One function's name, description, parameters and strictness, checked (the chat API
    /// nests them under "function", the Responses API has them on the tool itself).</summary>
    internal static ToolDefinition Definition(JsonElement fn, string at, IReadOnlyList<ToolDefinition> earlier, bool strictByDefault)
    {
        var name = fn.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : null;
        if (name is null || !NamePattern.IsMatch(name))
            throw ApiError.Invalid($"{at}.name must match ^[a-zA-Z0-9_-]{{1,64}}$.", $"{at}.name");
        if (earlier.Any(x => x.Name == name)) throw ApiError.Invalid($"{at}.name '{name}' is given twice.", $"{at}.name");
        string? description = fn.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
        JsonElement? parameters = null;
        if (fn.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null)
        {
            if (p.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{at}.parameters must be a JSON Schema object.", $"{at}.parameters");
            parameters = p.Clone();
        }
        bool strict = fn.TryGetProperty("strict", out var st) && st.ValueKind is JsonValueKind.True or JsonValueKind.False ? st.ValueKind == JsonValueKind.True : strictByDefault;
        return new ToolDefinition(name, description, parameters, strict);
    }

    /// <summary>An assistant message's tool_calls, checked (null when it has none).</summary>
    public static IReadOnlyList<ToolCall>? Calls(ChatMessageDto m, int i)
    {
        if (m.ToolCalls is not { ValueKind: not JsonValueKind.Null } calls) return null;
        string at = $"messages[{i}].tool_calls";
        if (m.Role != "assistant") throw ApiError.Invalid($"{at} is only allowed on assistant messages.", at);
        if (calls.ValueKind != JsonValueKind.Array) throw ApiError.Invalid($"{at} must be an array.", at);
        var list = new List<ToolCall>();
        int k = 0;
        foreach (var c in calls.EnumerateArray())
        {
            string here = $"{at}[{k}]";
            if (c.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{here} must be an object.", here);
            var id = c.TryGetProperty("id", out var idv) && idv.ValueKind == JsonValueKind.String ? idv.GetString()! : throw ApiError.Invalid($"{here}.id is required.", $"{here}.id");
            if (!c.TryGetProperty("function", out var fn) || fn.ValueKind != JsonValueKind.Object) throw ApiError.Invalid($"{here}.function is required.", $"{here}.function");
            var name = fn.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : throw ApiError.Invalid($"{here}.function.name is required.", $"{here}.function.name");
            var args = fn.TryGetProperty("arguments", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString()! : throw ApiError.Invalid($"{here}.function.arguments must be a string of JSON.", $"{here}.function.arguments");
            try { using var _ = JsonDocument.Parse(args); }
            catch (JsonException) { throw ApiError.Invalid($"{here}.function.arguments is not valid JSON.", $"{here}.function.arguments"); }
            list.Add(new ToolCall(id, name, args));
            k++;
        }
        return list;
    }
}
