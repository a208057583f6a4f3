using System.Text;
using RecurrentGemma.Inference;
using RecurrentGemma.Server.OpenAi;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// One response as it is generated: turns text deltas into output items and the stream's events
/// (numbered in order), and ends in the final response object. The streamed and the plain
/// endpoint both run it, so they cannot disagree about the text or the items. With tools offered,
/// text that may still become a call is held back until it is known to be one or not; each call
/// comes out as a function_call item as soon as its block closes, its arguments in pieces.
/// </summary>
public sealed class ResponseRun(ResponseObject initial, bool toolsOffered)
{
    const int ArgumentPiece = 24;   // arguments stream in pieces of this many characters
    readonly StringBuilder _text = new();
    readonly StringBuilder _held = new();
    readonly List<ResponseItemDto> _output = [];
    // The answer's token logprobs when asked for (include "message.output_text.logprobs"); each
    // goes out with the first text delta after it, since a token's text may be held back.
    readonly List<ChatTokenLogprobDto> _logprobs = [];
    int _logprobsSent;
    int _sequence;
    string? _messageId;
    bool _decidedText = !toolsOffered;

    public ResponseObject Response { get; private set; } = initial;
    public IReadOnlyList<ResponseItemDto> Output => _output;
    public string Text => _text.ToString();

    ResponseStreamEvent Event(string type) => new() { Type = type, SequenceNumber = _sequence++ };

    /// <summary>response.created and response.in_progress.</summary>
    public IReadOnlyList<ResponseStreamEvent> Start() =>
        [Event("response.created") with { Response = Response }, Event("response.in_progress") with { Response = Response }];

    /// <summary>The events for a piece of generated text and its tokens' logprobs (if asked for).</summary>
    public IReadOnlyList<ResponseStreamEvent> Push(string delta, IReadOnlyList<ChatTokenLogprobDto>? logprobs = null)
    {
        if (logprobs is { Count: > 0 }) _logprobs.AddRange(logprobs);
        if (delta.Length == 0) return [];
        _text.Append(delta);
        if (!_decidedText)
        {
            _held.Append(delta);
            if (ToolFormat.MayBeginCall(_held.ToString())) return ClosedCalls(_held.ToString());
            _decidedText = true;
            delta = _held.ToString();
            _held.Clear();
        }
        return TextDelta(delta);
    }

    /// <summary>The events of the calls whose blocks have closed since the last look (each call goes
    /// out as soon as its block is complete, as chat's streamed tool calls do).</summary>
    List<ResponseStreamEvent> ClosedCalls(string held)
    {
        var events = new List<ResponseStreamEvent>();
        var calls = ToolFormat.ClosedCalls(held);
        for (int i = _output.Count; i < calls.Count; i++)
        {
            var item = new ResponseItemDto
            {
                Type = "function_call", Id = ResponseInput.NewId("fc_"), Status = "in_progress",
                CallId = ResponseInput.NewId("call_")[..29], Name = calls[i].Name, Arguments = "",
            };
            events.Add(Event("response.output_item.added") with { OutputIndex = i, Item = item });
            var arguments = calls[i].Arguments;
            for (int at = 0; at < arguments.Length; at += ArgumentPiece)
                events.Add(Event("response.function_call_arguments.delta") with
                {
                    ItemId = item.Id, OutputIndex = i, Delta = arguments.Substring(at, Math.Min(ArgumentPiece, arguments.Length - at)),
                });
            events.Add(Event("response.function_call_arguments.done") with { ItemId = item.Id, OutputIndex = i, Name = calls[i].Name, Arguments = arguments });
            var done = item with { Status = "completed", Arguments = arguments };
            events.Add(Event("response.output_item.done") with { OutputIndex = i, Item = done });
            _output.Add(done);
        }
        return events;
    }

    List<ResponseStreamEvent> TextDelta(string delta)
    {
        var events = new List<ResponseStreamEvent>();
        if (_messageId is null) events.AddRange(OpenMessage());
        var logprobs = _logprobs[_logprobsSent..];
        _logprobsSent = _logprobs.Count;
        events.Add(Event("response.output_text.delta") with { ItemId = _messageId, OutputIndex = 0, ContentIndex = 0, Delta = delta, Logprobs = logprobs });
        return events;
    }

    IReadOnlyList<ResponseStreamEvent> OpenMessage()
    {
        _messageId = ResponseInput.NewId("msg_");
        return
        [
            Event("response.output_item.added") with
            {
                OutputIndex = 0, Item = new ResponseItemDto { Type = "message", Id = _messageId, Status = "in_progress", Role = "assistant", Content = [] },
            },
            Event("response.content_part.added") with { ItemId = _messageId, OutputIndex = 0, ContentIndex = 0, Part = ResponseContentPartDto.OutputText("") },
        ];
    }

    /// <summary>The answer ended ("stop" or "length"): the closing events, ending in
    /// response.completed or response.incomplete (the final <see cref="Response"/>).</summary>
    public IReadOnlyList<ResponseStreamEvent> Finish(string finishReason, UsageReport? usage)
    {
        var events = new List<ResponseStreamEvent>();
        bool complete = finishReason != "length";
        string text = _text.ToString();
        if (toolsOffered && _messageId is null && (_output.Count > 0 || ToolFormat.TryParse(text, out _)))
        {
            events.AddRange(ClosedCalls(text));   // any call not out yet
        }
        else
        {
            if (_held.Length > 0) { var rest = _held.ToString(); _held.Clear(); events.AddRange(TextDelta(rest)); }
            if (_messageId is null) events.AddRange(OpenMessage());
            if (_logprobsSent < _logprobs.Count) events.AddRange(TextDelta(""));   // tokens whose text never showed (e.g. a stop)
            var part = ResponseContentPartDto.OutputText(text, [.. _logprobs]);
            events.Add(Event("response.output_text.done") with { ItemId = _messageId, OutputIndex = 0, ContentIndex = 0, Text = text, Logprobs = [.. _logprobs] });
            events.Add(Event("response.content_part.done") with { ItemId = _messageId, OutputIndex = 0, ContentIndex = 0, Part = part });
            var message = new ResponseItemDto
            {
                Type = "message", Id = _messageId!, Status = complete ? "completed" : "incomplete", Role = "assistant", Content = [part],
            };
            events.Add(Event("response.output_item.done") with { OutputIndex = 0, Item = message });
            _output.Add(message);
        }
        Response = Response with
        {
            Status = complete ? "completed" : "incomplete",
            IncompleteDetails = complete ? null : new IncompleteDetailsDto("max_output_tokens"),
            Output = [.. _output],
            OutputText = _output.Count > 0 && _output[0].Type == "message" ? text : "",
            Usage = Usage(usage),
        };
        events.Add(Event(complete ? "response.completed" : "response.incomplete") with { Response = Response });
        return events;
    }

    /// <summary>A background response starts running (it was queued).</summary>
    public void MarkInProgress() => Response = Response with { Status = "in_progress" };

    /// <summary>A background response was cancelled: what it made so far stays in its output (the
    /// text as an incomplete message); no closing events (the stream just ends).</summary>
    public void Cancel()
    {
        if (_output.Count == 0 && _text.Length > 0) Finish("length", null);   // builds the output items; its events go nowhere
        Response = Response with { Status = "cancelled", IncompleteDetails = null, Output = [.. _output] };
    }

    /// <summary>Generation failed after it started: an error event, then response.failed.</summary>
    public IReadOnlyList<ResponseStreamEvent> Fail(string code, string message, string? param)
    {
        Response = Response with { Status = "failed", Error = new ResponseErrorDto(code, message), Output = [.. _output] };
        return [Event("error") with { Code = code, Message = message, Param = param }, Event("response.failed") with { Response = Response }];
    }

    static ResponseUsageDto Usage(UsageReport? u) => u is null
        ? new ResponseUsageDto(0, new(0), 0, new(0), 0)
        : new ResponseUsageDto(u.PromptTokens, new(u.CachedTokens), u.CompletionTokens, new(0), u.PromptTokens + u.CompletionTokens);
}
