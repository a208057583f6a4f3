using System.Text;

namespace RecurrentGemma.Text;

/// <summary>One part of a message's content (OpenAI's content-part array); only "text" renders.</summary>
public sealed record ChatContentPart(string Type, string? Text);

/// <summary>A chat message as clients send it: a role and either a string or content parts; an
/// assistant message may carry tool calls, a tool message answers one (<see cref="ToolCallId"/>).</summary>
public sealed record ChatMessage(string Role, string? Content, IReadOnlyList<ChatContentPart>? Parts = null)
{
    public IReadOnlyList<ToolCall>? ToolCalls { get; init; }
    public string? ToolCallId { get; init; }
    /// <summary>The function's name on a tool or legacy function message.</summary>
    public string? Name { get; init; }
    /// <summary>On an assistant message this server generated: exactly the ids it sampled (a stored
    /// response's transcript). The model turn is then those ids, not a re-tokenized text, so the
    /// prompt extends the state parked after the answer.</summary>
    public IReadOnlyList<int>? SampledIds { get; init; }

    public static ChatMessage User(string text) => new("user", text);
    public static ChatMessage Assistant(string text) => new("assistant", text);
    public static ChatMessage System(string text) => new("system", text);
}

/// <summary>One rendered turn: "user" or "model", its text, and the sampled ids when the turn is
/// exactly one generated assistant message.</summary>
public sealed record ChatTurn(string Role, string Text)
{
    public IReadOnlyList<int>? SampledIds { get; init; }
    /// <summary>The model's turn the answer continues: rendered without its end of turn, and no
    /// new model turn follows it.</summary>
    public bool Open { get; init; }
}

/// <summary>A conversation the template cannot render; names the offending message.</summary>
public sealed class ChatTemplateException(string message, string param) : Exception(message)
{
    /// <summary>The request field at fault, e.g. "messages[2].content".</summary>
    public string Param { get; } = param;
}

/// <summary>
/// Gemma's instruction-tuned chat format (the reference's apply_it_formatter / HF chat_template):
/// <c>&lt;bos&gt;&lt;start_of_turn&gt;user\n{text}&lt;end_of_turn&gt;\n&lt;start_of_turn&gt;model\n{text}&lt;end_of_turn&gt;\n…&lt;start_of_turn&gt;model\n</c>.
/// Roles: user → user, assistant → model. Gemma has no system role, so system (and developer)
/// text is folded into the next user turn ("system text", blank line, "user text"), as Google's
/// guidance does. Content parts of type "text" are joined with newlines. Message text is trimmed, as the official template does. Consecutive messages
/// of one role are joined with a blank line (OpenAI accepts them; Gemma expects alternation).
/// </summary>
public static class GemmaChatTemplate
{
    public const string StartOfTurn = "<start_of_turn>";
    public const string EndOfTurn = "<end_of_turn>";

    /// <summary>The prompt text (without BOS) ending in the generation prompt for the model.</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, ToolPrompt? tools = null)
    {
        var turns = Turns(messages, tools);
        var sb = new StringBuilder();
        foreach (var (role, text) in turns)
            sb.Append(StartOfTurn).Append(role).Append('\n').Append(text).Append(EndOfTurn).Append('\n');
        sb.Append(StartOfTurn).Append("model\n");
        return sb.ToString();
    }

    /// <summary>The model's input ids: BOS, then the rendered prompt.</summary>
    public static List<int> Encode(GemmaTokenizer tokenizer, IReadOnlyList<ChatMessage> messages) =>
        tokenizer.EncodeWithBos(Render(messages));

    /// <summary>Validated, merged (role, text) turns in order; the last one is the user's. With
    /// <paramref name="tools"/>, their description joins the first user turn (after any system
    /// text), assistant tool calls render as call blocks and tool results as a user turn
    /// (<see cref="ToolFormat"/>). With <paramref name="continueFinal"/> the last one is instead an
    /// assistant message the model continues (vLLM's continue_final_message: the caller prefills
    /// the start of the answer), kept as written at its end — a trailing space is part of the prefix.</summary>
    public static List<ChatTurn> Turns(IReadOnlyList<ChatMessage> messages, ToolPrompt? tools = null, bool continueFinal = false)
    {
        if (messages is null || messages.Count == 0)
            throw new ChatTemplateException("messages must contain at least one message", "messages");
        var turns = new List<ChatTurn>();
        var pendingSystem = new List<string>();
        var callIds = new Dictionary<string, string>();   // tool call id → function name, from earlier assistant messages
        bool toolsDescribed = tools is null;
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            bool open = continueFinal && i == messages.Count - 1;
            var text = open ? TextOf(m, i).TrimStart() : TextOf(m, i).Trim();
            if (open && (m.Role != "assistant" || m.ToolCalls is { Count: > 0 }))
                throw new ChatTemplateException("continue_final_message needs the conversation to end with an assistant message (without tool calls) to continue", "messages");
            switch (m.Role)
            {
                case "system" or "developer":
                    if (text.Length > 0) pendingSystem.Add(text);
                    break;
                case "user":
                    if (text.Length == 0 && pendingSystem.Count == 0)
                        throw new ChatTemplateException($"messages[{i}].content must not be empty", $"messages[{i}].content");
                    if (!toolsDescribed)
                    {
                        pendingSystem.Add(ToolFormat.Describe(tools!));
                        toolsDescribed = true;
                    }
                    if (pendingSystem.Count > 0)
                    {
                        text = string.Join("\n\n", pendingSystem.Append(text).Where(t => t.Length > 0));
                        pendingSystem.Clear();
                    }
                    Add(turns, "user", text);
                    break;
                case "assistant":
                    if (m.ToolCalls is { Count: > 0 } calls)
                    {
                        foreach (var c in calls) callIds[c.Id] = c.Name;
                        var blocks = string.Join("\n", calls.Select(c => ToolFormat.RenderCall(c.Name, c.Arguments)));
                        text = text.Length == 0 ? blocks : text + "\n" + blocks;
                    }
                    Add(turns, "model", text, m.SampledIds);
                    break;
                case "tool":
                    if (m.ToolCallId is null || !callIds.TryGetValue(m.ToolCallId, out var called))
                        throw new ChatTemplateException($"messages[{i}].tool_call_id '{m.ToolCallId}' matches no tool call of an earlier assistant message", $"messages[{i}].tool_call_id");
                    Add(turns, "user", ToolFormat.RenderResult(m.ToolCallId, called, text));
                    break;
                case "function":
                    Add(turns, "user", ToolFormat.RenderResult(null, m.Name ?? "function", text));
                    break;
                default:
                    throw new ChatTemplateException($"messages[{i}].role '{m.Role}' is not one of system, developer, user, assistant, tool, function", $"messages[{i}].role");
            }
        }
        if (continueFinal)
        {
            // The continued answer must follow a user turn, as any answer does.
            if (turns.Count < 2 || turns[^1].Role != "model" || turns[^2].Role != "user" || pendingSystem.Count > 0)
                throw new ChatTemplateException("continue_final_message needs a user turn before the assistant message it continues", "messages");
            turns[^1] = turns[^1] with { SampledIds = null, Open = true };
            return turns;
        }
        if (turns.Count == 0 || turns[^1].Role != "user" || pendingSystem.Count > 0)
            throw new ChatTemplateException("the conversation must end with a user or tool message (the model answers the last user turn)", "messages");
        return turns;
    }

    static void Add(List<ChatTurn> turns, string role, string text, IReadOnlyList<int>? sampled = null)
    {
        // A merged turn is no longer one generated message: its sampled ids no longer apply.
        if (turns.Count > 0 && turns[^1].Role == role)
            turns[^1] = new ChatTurn(role, turns[^1].Text.Length == 0 ? text : text.Length == 0 ? turns[^1].Text : turns[^1].Text + "\n\n" + text);
        else
            turns.Add(new ChatTurn(role, text) { SampledIds = sampled });
    }

    static string TextOf(ChatMessage m, int index)
    {
        if (m.Parts is null) return m.Content ?? "";
        // Text parts are joined with a newline, as vLLM does.
        var texts = new List<string>();
        for (int p = 0; p < m.Parts.Count; p++)
        {
            var part = m.Parts[p];
            if (part.Type != "text")
                throw new ChatTemplateException($"messages[{index}].content[{p}] has type '{part.Type}': only text content is supported", $"messages[{index}].content[{p}].type");
            if (part.Text is null)
                throw new ChatTemplateException($"messages[{index}].content[{p}].text is required for a text part", $"messages[{index}].content[{p}].text");
            texts.Add(part.Text);
        }
        return string.Join("\n", texts);
    }
}
