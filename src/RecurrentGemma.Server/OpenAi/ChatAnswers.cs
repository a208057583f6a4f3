using RecurrentGemma.Inference;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// A chat completion's choices put together from the generation's events: each choice's text,
/// logprobs, token ids and finish reason, then the message — text, or tool calls when tools were
/// offered and the answer is made of calls. The plain endpoint answers with it; a streamed one
/// keeps it too, for a completion stored with store: true.
/// </summary>
public sealed class ChatAnswers(int n, bool toolsOffered, bool logprobs, bool returnTokenIds)
{
    readonly System.Text.StringBuilder[] _texts = Enumerable.Range(0, n).Select(_ => new System.Text.StringBuilder()).ToArray();
    readonly List<ChatTokenLogprobDto>[] _logprobs = Enumerable.Range(0, n).Select(_ => new List<ChatTokenLogprobDto>()).ToArray();
    readonly List<int>[] _ids = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
    readonly string?[] _finish = new string?[n];

    public UsageReport? Usage { get; private set; }
    public string? FirstFinish => _finish.FirstOrDefault();
    public string FirstText => _texts[0].ToString();

    /// <summary>Takes one event of the generation.</summary>
    public void Add(TextEvent e)
    {
        switch (e)
        {
            case TextDelta d: _texts[d.Index].Append(d.Text); _logprobs[d.Index].AddRange(d.Logprobs.Select(ChatCompletionsEndpoint.ToDto)); _ids[d.Index].AddRange(d.TokenIds); break;
            case ChoiceFinished f: _finish[f.Index] = f.FinishReason; break;
            case UsageReport u: Usage = u; break;
        }
    }

    public List<ChatChoiceDto> Choices() => Enumerable.Range(0, n).Select(i =>
    {
        var text = _texts[i].ToString();
        // With tools offered, an answer made of calls becomes message.tool_calls.
        if (toolsOffered && ToolFormat.TryParse(text, out var calls))
            return new ChatChoiceDto(i, new AssistantMessageDto("assistant", null,
                calls.Select(c => new ToolCallDto(ServerSentEvents.NewId("call_"), "function", new FunctionCallDto(c.Name, c.Arguments))).ToList()),
                logprobs ? new ChatLogprobsDto(_logprobs[i]) : null, "tool_calls", returnTokenIds ? _ids[i] : null);
        return new ChatChoiceDto(i, new AssistantMessageDto("assistant", text),
            logprobs ? new ChatLogprobsDto(_logprobs[i]) : null, _finish[i] ?? "stop", returnTokenIds ? _ids[i] : null);
    }).ToList();
}
