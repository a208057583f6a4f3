using RecurrentGemma.Text;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// One choice's streamed answer when tools are offered: text that cannot begin a call streams
/// as content at once; an answer that opens with the call marker is held until each call block
/// closes, then goes out as OpenAI streams calls — per call its index, id, type and name once,
/// then the arguments in pieces. Whatever does not parse as calls at the end goes out as content.
/// </summary>
public sealed class ToolCallStream
{
    const int ArgumentPiece = 24;
    readonly System.Text.StringBuilder _buffer = new();
    bool _text;
    int _emittedCalls;

    public bool MadeCalls => _emittedCalls > 0;

    /// <summary>New text of this choice → deltas to send now.</summary>
    public List<DeltaDto> Push(string text)
    {
        if (_text) return text.Length == 0 ? [] : [new DeltaDto(null, text)];
        _buffer.Append(text);
        var s = _buffer.ToString();
        if (!ToolFormat.MayBeginCall(s))
        {
            _text = true;
            _buffer.Clear();
            return s.Length == 0 ? [] : [new DeltaDto(null, s)];
        }
        return EmitClosedCalls(s);
    }

    /// <summary>The choice ended → the deltas still held.</summary>
    public List<DeltaDto> Finish()
    {
        if (_text || _buffer.Length == 0) return [];
        var s = _buffer.ToString();
        var deltas = EmitClosedCalls(s);
        if (deltas.Count == 0 && _emittedCalls == 0) return [new DeltaDto(null, s)];
        return deltas;
    }

    List<DeltaDto> EmitClosedCalls(string s)
    {
        var calls = ToolFormat.ClosedCalls(s);
        if (calls.Count == 0) return [];
        var deltas = new List<DeltaDto>();
        for (int i = _emittedCalls; i < calls.Count; i++)
        {
            var (name, arguments) = calls[i];
            deltas.Add(new DeltaDto(null, null, [new ToolCallDeltaDto(i, ServerSentEvents.NewId("call_"), "function", new FunctionDeltaDto(name, ""))]));
            for (int at = 0; at < arguments.Length; at += ArgumentPiece)
                deltas.Add(new DeltaDto(null, null, [new ToolCallDeltaDto(i, null, null, new FunctionDeltaDto(null, arguments.Substring(at, Math.Min(ArgumentPiece, arguments.Length - at))))]));
        }
        _emittedCalls = calls.Count;
        return deltas;
    }
}

/// <summary>
/// With tools offered a token's text may be held until it is known to be a call or not; its
/// logprobs and ids (when asked for) wait with it and go out with the choice's next piece, text
/// or call, so a stream carries every token the plain answer does.
/// </summary>
public sealed class HeldTokens(bool logprobs, bool ids)
{
    readonly List<ChatTokenLogprobDto> _logprobs = [];
    readonly List<int> _ids = [];

    public bool Any => _logprobs.Count > 0 || _ids.Count > 0;

    public void Add(RecurrentGemma.Inference.TextDelta d)
    {
        if (logprobs) _logprobs.AddRange(d.Logprobs.Select(ChatCompletionsEndpoint.ToDto));
        if (ids) _ids.AddRange(d.TokenIds);
    }

    /// <summary>What waited so far (null where not asked for), and nothing waits after.</summary>
    public (ChatLogprobsDto? Logprobs, List<int>? Ids) Take()
    {
        var taken = (logprobs ? new ChatLogprobsDto([.. _logprobs]) : null, ids ? [.. _ids] : (List<int>?)null);
        _logprobs.Clear();
        _ids.Clear();
        return taken;
    }
}
