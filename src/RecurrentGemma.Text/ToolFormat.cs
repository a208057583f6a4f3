using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace RecurrentGemma.Text;

/// <summary>A function the model may call: its name, what it does, and its arguments' JSON Schema.</summary>
public sealed record ToolDefinition(string Name, string? Description, JsonElement? Parameters, bool Strict = false);

/// <summary>A call the model made (or a client sends back in an assistant message); arguments are JSON text.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>The tools offered in a prompt and what is asked of the model.</summary>
/// <param name="Required">A call must be made (tool_choice required or a named function).</param>
/// <param name="Only">The one function that must be called (a named tool_choice), else null.</param>
public sealed record ToolPrompt(IReadOnlyList<ToolDefinition> Tools, bool Required = false, string? Only = null, bool Parallel = true);

/// <summary>
/// The tool-calling format of this server (Gemma has none of its own). The tools are described in
/// the first user turn; a call is written as
/// <c>&lt;tool_call&gt;\n{"name":"f","arguments":{…}}\n&lt;/tool_call&gt;</c>, several calls one
/// after another separated by a newline; a result comes back in a user turn as
/// <c>&lt;tool_response&gt;\n{"tool_call_id":…,"name":…,"content":…}\n&lt;/tool_response&gt;</c>.
/// Calls are rendered byte for byte as the model writes them, so a conversation that sends a
/// call back continues the state parked after it.
/// </summary>
public static class ToolFormat
{
    public const string CallOpen = "<tool_call>\n", CallClose = "\n</tool_call>", CallSeparator = "\n";

    public static string Describe(ToolPrompt prompt)
    {
        var sb = new StringBuilder();
        sb.Append("You can call functions. To call one or more, reply with only the calls, each written as\n")
          .Append(CallOpen).Append("{\"name\":\"<function name>\",\"arguments\":<the arguments as a JSON object>}").Append(CallClose).Append('\n')
          .Append("Results come back as <tool_response> blocks. Answer in plain text when no call is needed.")
          // The same words whatever tool_choice says (the grammar enforces it), so a conversation
          // that moves from "required" to "auto" keeps its prefix and its parked state.
          .Append("\nThe functions:");
        foreach (var t in prompt.Tools)
        {
            sb.Append('\n').Append("{\"name\":").Append(JsonSerializer.Serialize(t.Name));
            if (t.Description is { Length: > 0 } d) sb.Append(",\"description\":").Append(JsonSerializer.Serialize(d));
            sb.Append(",\"parameters\":").Append(t.Parameters is { } p ? JsonSerializer.Serialize(p) : "{}").Append('}');
        }
        return sb.ToString();
    }

    public static string RenderCall(string name, string arguments) =>
        CallOpen + "{\"name\":" + JsonSerializer.Serialize(name) + ",\"arguments\":" + arguments + "}" + CallClose;

    public static string RenderResult(string? callId, string name, string content) =>
        "<tool_response>\n{" + (callId is null ? "" : "\"tool_call_id\":" + JsonSerializer.Serialize(callId) + ",")
        + "\"name\":" + JsonSerializer.Serialize(name) + ",\"content\":" + JsonSerializer.Serialize(content) + "}\n</tool_response>";

    static readonly Regex Block = new(@"\G<tool_call>\n(?<json>.*?)\n</tool_call>(\n|$)", RegexOptions.Singleline | RegexOptions.CultureInvariant);

    /// <summary>The calls in a model's answer, when the whole answer is calls; else false (it is text).</summary>
    public static bool TryParse(string text, out List<(string Name, string Arguments)> calls)
    {
        calls = [];
        if (!text.StartsWith(CallOpen, StringComparison.Ordinal)) return false;
        int at = 0;
        while (at < text.Length)
        {
            var m = Block.Match(text, at);
            if (!m.Success) { calls = []; return false; }
            try
            {
                using var doc = JsonDocument.Parse(m.Groups["json"].Value);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                    || !root.TryGetProperty("arguments", out var args))
                { calls = []; return false; }
                calls.Add((name.GetString()!, args.GetRawText()));
            }
            catch (JsonException) { calls = []; return false; }
            at = m.Index + m.Length;
        }
        return calls.Count > 0;
    }

    /// <summary>The calls whose blocks have closed so far in a streamed answer (its text up to the
    /// last closing marker parsed as calls); empty while none has, or when that text is not calls.</summary>
    public static List<(string Name, string Arguments)> ClosedCalls(string soFar)
    {
        int end = soFar.LastIndexOf(CallClose, StringComparison.Ordinal);
        return end >= 0 && TryParse(soFar[..(end + CallClose.Length)], out var calls) ? calls : [];
    }

    /// <summary>Whether text could still become the start of a call (a prefix of the opening marker).</summary>
    public static bool MayBeginCall(string text) => CallOpen.StartsWith(text, StringComparison.Ordinal) || text.StartsWith(CallOpen, StringComparison.Ordinal);
}
