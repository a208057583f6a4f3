using System.Runtime.CompilerServices;
using RecurrentGemma.Engine;
using RecurrentGemma.Text;

namespace RecurrentGemma.Inference;

/// <summary>
/// A submitted generation: turns the engine's token events into text events. Per choice, an
/// incremental detokenizer (never half a character) feeds a stop matcher (never part of a stop
/// string); a stop string found ends that choice in the engine at once. Disposing it before the
/// end cancels the generation.
/// </summary>
public sealed class TextGeneration : IAsyncDisposable
{
    readonly InferenceService _service;
    readonly TextGenerationRequest _request;
    readonly IRequestHandle _handle;
    readonly StopSequenceMatcher[] _matchers;

    internal TextGeneration(InferenceService service, TextGenerationRequest request, IRequestHandle handle, StopSequenceMatcher[] matchers, List<int> prompt)
    {
        _service = service; _request = request; _handle = handle; _matchers = matchers; PromptTokens = prompt;
    }

    public IReadOnlyList<int> PromptTokens { get; }

    public async IAsyncEnumerable<TextEvent> ReadAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        int n = _request.N;
        var tokenizer = _service.Tokenizer;
        var detokenizers = Enumerable.Range(0, n).Select(_ => tokenizer.CreateDetokenizer()).ToArray();
        var pendingLogprobs = Enumerable.Range(0, n).Select(_ => new List<TokenLogprobText>()).ToArray();
        var pendingIds = Enumerable.Range(0, n).Select(_ => 0).ToArray();   // sampled ids not yet in a delta
        var stoppedByString = new bool[n];
        var texts = Enumerable.Range(0, n).Select(_ => new System.Text.StringBuilder()).ToArray();
        var sampled = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
        // Tokens the engine made for a choice after its stop string was found, before it saw the
        // stop: how many depends on timing, so they are not the answer's and usage leaves them out
        // (the same request then reports the same usage, streamed or not).
        int afterStop = 0;
        IReadOnlyList<int> TakeIds(int index)
        {
            var ids = sampled[index];
            var taken = ids.GetRange(ids.Count - pendingIds[index], pendingIds[index]);
            pendingIds[index] = 0;
            return taken;
        }

        await foreach (var e in _handle.ReadEventsAsync(cancellationToken).ConfigureAwait(false))
        {
            switch (e)
            {
                case TokenEvent t when !stoppedByString[t.Index]:
                {
                    sampled[t.Index].Add(t.TokenId);
                    pendingIds[t.Index]++;
                    if (t.Logprob is { } lp) pendingLogprobs[t.Index].Add(_service.Describe(lp));
                    var text = detokenizers[t.Index].Push(t.TokenId);
                    // Before min_tokens no stop string is looked for (as vLLM): the text passes as it is.
                    var scan = sampled[t.Index].Count <= _request.MinTokens ? new StopScan(text, null) : _matchers[t.Index].Push(text);
                    if (scan.MatchedStop is not null)
                    {
                        stoppedByString[t.Index] = true;
                        _handle.StopChoice(t.Index);
                    }
                    if (scan.Emit.Length > 0 || scan.MatchedStop is not null)
                    {
                        texts[t.Index].Append(scan.Emit);
                        yield return new TextDelta(t.Index, scan.Emit, InferenceService.Take(pendingLogprobs[t.Index])) { TokenIds = TakeIds(t.Index) };
                    }
                    break;
                }
                case TokenEvent:
                    afterStop++;
                    break;
                case FinishedEvent f:
                {
                    if (!stoppedByString[f.Index])
                    {
                        var rest = _matchers[f.Index].Push(detokenizers[f.Index].Flush());
                        var tail = rest.Emit + (rest.MatchedStop is null ? _matchers[f.Index].Flush() : "");
                        if (tail.Length > 0 || pendingLogprobs[f.Index].Count > 0 || pendingIds[f.Index] > 0)
                        {
                            texts[f.Index].Append(tail);
                            yield return new TextDelta(f.Index, tail, InferenceService.Take(pendingLogprobs[f.Index])) { TokenIds = TakeIds(f.Index) };
                        }
                        if (rest.MatchedStop is not null) stoppedByString[f.Index] = true;
                    }
                    var reason = f.Reason == FinishReason.Cancelled ? "cancelled"
                        : stoppedByString[f.Index] || f.Reason == FinishReason.Stop ? "stop" : "length";
                    // A continued answer's text is only its end: not the message a client sends back.
                    if (f.Index == 0 && f.Reason != FinishReason.Cancelled && _request.Messages is not null && !_request.ContinueFinalMessage && !stoppedByString[0])
                        _service.RememberGenerated(_request.Owner, texts[0].ToString(), sampled[0]);
                    yield return new ChoiceFinished(f.Index, reason) { TokenIds = sampled[f.Index].ToArray() };
                    break;
                }
                case PromptLogprobsEvent scored:
                {
                    // One list for the prompt, shown on every choice (they share it).
                    var tokens = new List<PromptTokenLogprob>(PromptTokens.Count);
                    if (PromptTokens.Count > 0) tokens.Add(new PromptTokenLogprob(tokenizer.Decode([PromptTokens[0]]), null, null));
                    foreach (var lp in scored.Logprobs)
                    {
                        var d = _service.Describe(lp);
                        tokens.Add(new PromptTokenLogprob(d.Token, d.Logprob, d.Top));
                    }
                    for (int i = 0; i < n; i++) yield return new PromptLogprobs(i, tokens);
                    break;
                }
                case UsageEvent u:
                    yield return new UsageReport(u.PromptTokens, u.CompletionTokens - afterStop, u.CachedTokens);
                    break;
                case ErrorEvent err:
                    throw new GenerationFailedException(err.Message);
            }
        }
    }

    public ValueTask DisposeAsync() => _handle.DisposeAsync();

}
