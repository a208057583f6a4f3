using System.Runtime.CompilerServices;
using RecurrentGemma.Engine;
using RecurrentGemma.Text;

namespace RecurrentGemma.Inference;

/// <summary>
/// Joins the text layer and the engine: template → token ids → engine → incremental detokenizer
/// → stop strings → text deltas. A stop string found in the text ends that choice in the engine
/// at once. Errors are typed: <see cref="InvalidRequestException"/>, the engine's
/// <see cref="EngineOverloadedException"/> and <see cref="ContextTooLongException"/>.
/// </summary>
public sealed class InferenceService(IEngineClient engine, GemmaTokenizer tokenizer, string modelId, InferenceOptions? options = null)
{
    readonly InferenceOptions _options = options ?? new();
    readonly Constraints.ConstraintCompiler _constraints = new();
    readonly GeneratedTextCache _generated = new(capacity: 1024);

    public string ModelId { get; } = modelId;
    public GemmaTokenizer Tokenizer { get; } = tokenizer;
    public IEngineClient Engine { get; } = engine;

    /// <summary>Token ids the model reads for this request (BOS first).</summary>
    public List<int> PromptTokens(TextGenerationRequest request)
    {
        CheckTextSize(request);
        if (request.Messages is { } messages)
        {
            try
            {
                var turns = GemmaChatTemplate.Turns(messages, request.Tools, request.ContinueFinalMessage);
                return ChatPromptIds(turns, request.Owner);
            }
            catch (ChatTemplateException e) { throw new InvalidRequestException(e.Message, e.Param); }
        }
        if (request.Prompt is null && request.PromptTokenIds is { } ids)
        {
            if (ids.Count == 0) throw new InvalidRequestException("prompt must hold at least one token id", "prompt");
            foreach (int id in ids)
                if (id < 0 || id >= Tokenizer.VocabSize)
                    throw new InvalidRequestException($"prompt token id {id} is outside the vocabulary (0..{Tokenizer.VocabSize - 1})", "prompt");
            return [.. ids];
        }
        if (request.Prompt is null) throw new InvalidRequestException("prompt is required", "prompt");
        return Tokenizer.EncodeWithBos(request.Prompt);
    }

    /// <summary>
    /// Refuses, before tokenizing, a prompt whose text is provably over the token limit: one
    /// token covers at most <see cref="GemmaTokenizer.MaxTokenBytes"/> bytes of text, so more
    /// bytes than limit × that must give more tokens than the limit. Never refuses a prompt
    /// that would fit; spares the tokenizer megabytes it would only count to refuse.
    /// </summary>
    void CheckTextSize(TextGenerationRequest request)
    {
        if (_options.MaxPromptTokens is not { } max) return;
        long bytes = request.Messages is { } messages
            ? messages.Sum(m => (long)System.Text.Encoding.UTF8.GetByteCount(m.Content ?? "") + (m.Parts?.Sum(p => System.Text.Encoding.UTF8.GetByteCount(p.Text ?? "")) ?? 0))
            : System.Text.Encoding.UTF8.GetByteCount(request.Prompt ?? "");
        long bound = (long)max * Tokenizer.MaxTokenBytes;
        if (bytes > bound)
            throw new InvalidRequestException(
                $"This model's maximum prompt length is {max} tokens, but the request's text ({bytes} bytes) is longer than any prompt of that many tokens.",
                request.Messages is null ? "prompt" : "messages", "context_length_exceeded");
    }

    /// <summary>
    /// Encodes turn by turn (the turn markers are atomic pieces, so this equals encoding the
    /// rendered text), substituting the sampled ids for an assistant message whose text is
    /// exactly what this server generated — so the next turn continues the parked final state
    /// instead of a re-tokenized copy of the answer.
    /// </summary>
    List<int> ChatPromptIds(List<ChatTurn> turns, string? owner)
    {
        var ids = new List<int> { Tokenizer.BosId };
        foreach (var turn in turns)
        {
            var (role, text) = (turn.Role, turn.Text);
            ids.AddRange(Tokenizer.Encode($"{GemmaChatTemplate.StartOfTurn}{role}\n"));
            if (role == "model" && turn.SampledIds is { } known) ids.AddRange(known);
            else if (role == "model" && _generated.TryGet(owner, text, out var sampled)) ids.AddRange(sampled);
            else ids.AddRange(_options.AllowSpecialTokensInContent ? Tokenizer.Encode(text) : Tokenizer.EncodeContent(text));
            if (turn.Open) return ids;   // the answer continues this turn: no end of turn, no new model turn
            ids.AddRange(Tokenizer.Encode($"{GemmaChatTemplate.EndOfTurn}\n"));
        }
        ids.AddRange(Tokenizer.Encode($"{GemmaChatTemplate.StartOfTurn}model\n"));
        return ids;
    }

    /// <summary>
    /// Validates, encodes and submits a request. Every error of the request itself is thrown
    /// here, before any output exists; the returned generation then only streams.
    /// </summary>
    public TextGeneration Start(TextGenerationRequest request, CancellationToken cancellationToken = default)
    {
        StopSequenceMatcher[] matchers;
        // A constrained answer is never cut by a stop string (it would no longer parse).
        var stops = request.Format is null && request.Tools is null ? request.Stop : [];
        try { matchers = Enumerable.Range(0, request.N).Select(_ => new StopSequenceMatcher(stops, request.IncludeStopString)).ToArray(); }
        catch (ArgumentException e) { throw new InvalidRequestException(e.Message.Split(" (Parameter")[0], "stop"); }
        var prompt = PromptTokens(request);
        // A constrained answer ends where its grammar does: nothing may end it early or keep it
        // going, and its grammar reads it from its first token, so it cannot continue a prefix.
        if (request.Tools is not null || request.Format is not null)
        {
            string? field = request.IgnoreEos ? "ignore_eos" : request.MinTokens > 0 ? "min_tokens" : request.StopTokenIds.Count > 0 ? "stop_token_ids"
                : request.ContinueFinalMessage ? "continue_final_message" : null;
            if (field is not null)
                throw new InvalidRequestException($"{field} cannot be combined with structured output or tools: the answer ends where its grammar does.", field);
        }
        // The model's own end ids, unless ignore_eos; then the caller's.
        var stopIds = new HashSet<int>();
        if (!request.IgnoreEos)
        {
            stopIds.Add(Tokenizer.EosId);
            if (Tokenizer.EndOfTurnId >= 0) stopIds.Add(Tokenizer.EndOfTurnId);
        }
        foreach (int id in request.StopTokenIds)
        {
            if (id < 0 || id >= Tokenizer.VocabSize)
                throw new InvalidRequestException($"stop_token_ids holds {id}: not a token id of this model (0..{Tokenizer.VocabSize - 1}).", "stop_token_ids");
            stopIds.Add(id);
        }
        var constraint = Constraint(request, stopIds);
        try
        {
            var handle = Engine.Submit(new GenerationRequest
            {
                PromptTokens = prompt, Sampling = request.Sampling, MaxNewTokens = request.MaxTokens, StopTokenIds = stopIds, MinNewTokens = request.MinTokens,
                N = request.N, Logprobs = request.Logprobs, TopLogprobs = request.TopLogprobs, PromptLogprobs = request.PromptLogprobs ? request.TopLogprobs : null,
                SessionId = request.SessionId, Owner = request.Owner, ParentSessionId = request.ParentSessionId, KeepState = request.KeepState, SnapshotPrompt = request.SnapshotPrompt, SampleableVocab = Tokenizer.VocabSize, Constraint = constraint,
                Priority = request.Priority,
            }, cancellationToken);
            return new TextGeneration(this, request, handle, matchers, prompt);
        }
        catch (InvalidGenerationRequestException e) { throw new InvalidRequestException(e.Message, e.Param); }
        catch (ContextTooLongException e)
        {
            throw new InvalidRequestException($"This model's maximum prompt length is {e.MaxPromptTokens} tokens, but the request has {e.PromptTokens} prompt tokens.",
                request.Messages is null ? "prompt" : "messages", "context_length_exceeded");
        }
    }

    /// <summary>Start + stream, for callers that need no separation.</summary>
    public async IAsyncEnumerable<TextEvent> GenerateAsync(TextGenerationRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var generation = Start(request, cancellationToken);
        await foreach (var e in generation.ReadAsync(cancellationToken).ConfigureAwait(false)) yield return e;
    }

    /// <summary>
    /// What limits the ids a choice may sample, if anything: vLLM's bad_words or
    /// allowed_token_ids, the offered tools' call grammar, or the structured output's. One per
    /// choice, so they do not combine (nor with min_tokens, which the engine leaves to a constraint).
    /// </summary>
    ITokenConstraint? Constraint(TextGenerationRequest request, HashSet<int> stopIds)
    {
        void Alone(string field, bool besideAllowed)
        {
            string? other = besideAllowed && request.AllowedTokenIds is not null ? "allowed_token_ids" : request.Tools is not null ? "tools"
                : request.Format is not null ? "response_format" : request.MinTokens > 0 ? "min_tokens" : null;
            if (other is not null) throw new InvalidRequestException($"{field} cannot be combined with {other}.", field);
        }
        if (request.BadWords is { Count: > 0 } badWords)
        {
            Alone("bad_words", besideAllowed: true);
            if (badWords.Count > MaxBadWords) throw new InvalidRequestException($"bad_words may hold at most {MaxBadWords} words, got {badWords.Count}.", "bad_words");
            var sequences = new List<int[]>();
            for (int i = 0; i < badWords.Count; i++)
            {
                if (string.IsNullOrWhiteSpace(badWords[i])) throw new InvalidRequestException($"bad_words[{i}] is empty.", $"bad_words[{i}]");
                foreach (var form in new[] { badWords[i], " " + badWords[i].TrimStart() })
                {
                    var ids = Tokenizer.Encode(form).ToArray();
                    if (ids.Length > 0 && !sequences.Any(s => s.AsSpan().SequenceEqual(ids))) sequences.Add(ids);
                }
            }
            return new Constraints.BadWordsConstraint(sequences, Tokenizer.VocabSize);
        }
        if (request.AllowedTokenIds is { } allowed)
        {
            Alone("allowed_token_ids", besideAllowed: false);
            if (allowed.Count == 0) throw new InvalidRequestException("allowed_token_ids must hold at least one id.", "allowed_token_ids");
            for (int i = 0; i < allowed.Count; i++)
                if (allowed[i] < 0 || allowed[i] >= Tokenizer.VocabSize)
                    throw new InvalidRequestException($"allowed_token_ids[{i}] is {allowed[i]}: not a token id of this model (0..{Tokenizer.VocabSize - 1}).", $"allowed_token_ids[{i}]");
            return new Constraints.AllowedTokensConstraint(allowed, Tokenizer.VocabSize);
        }
        if (request.Tools is { } tools)
        {
            try { return _constraints.Constraint(tools, Tokenizer, stopIds); }
            catch (Text.Grammar.GrammarException e) { throw new InvalidRequestException($"The tools cannot be used: {e.Message}.", e.Path); }
        }
        if (request.Format is { } format)
        {
            try { return _constraints.Constraint(format, Tokenizer, stopIds); }
            catch (Text.Grammar.GrammarException e)
            {
                var param = format.Kind == Constraints.OutputFormatKind.JsonSchema
                    ? (format.Param ?? "response_format.json_schema.schema") + (e.Path.Length > 0 ? "." + e.Path : "") : format.Param ?? "response_format";
                var what = format.Kind == Constraints.OutputFormatKind.Regex ? "The regular expression" : "The schema";
                throw new InvalidRequestException($"{what} cannot be used: {e.Message}" + (e.Path.Length > 0 && format.Kind != Constraints.OutputFormatKind.Regex ? $" (at '{e.Path}')." : "."), param);
            }
        }
        return null;
    }

    /// <summary>Each step checks every banned word's ending against the choice's last ids: bounded.</summary>
    const int MaxBadWords = 256;

    internal void RememberGenerated(string? owner, string text, IReadOnlyList<int> ids) => _generated.Remember(owner, text, ids);

    internal static IReadOnlyList<TokenLogprobText> Take(List<TokenLogprobText> pending)
    {
        if (pending.Count == 0) return [];
        var list = pending.ToList();
        pending.Clear();
        return list;
    }

    internal TokenLogprobText Describe(TokenLogprob lp)
    {
        (string, byte[]) Text(int id)
        {
            var piece = Tokenizer.Decode([id]);
            var raw = Tokenizer.PieceText(id);
            // A byte-fallback piece is one raw byte (not valid text on its own).
            if (raw.StartsWith("<0x") && raw.Length == 6) return (raw, [Convert.ToByte(raw[3..5], 16)]);
            return (piece, System.Text.Encoding.UTF8.GetBytes(piece));
        }
        var (token, bytes) = Text(lp.TokenId);
        return new TokenLogprobText(token, bytes, lp.Logprob, lp.Top.Select(t => { var (s, b) = Text(t.TokenId); return (s, b, t.Logprob); }).ToList());
    }
}

/// <summary>How the inference layer treats text.</summary>
public sealed record InferenceOptions
{
    /// <summary>Tokenize message content as raw SentencePiece does, so a turn marker typed in a
    /// message becomes a real marker (off by default: a user could forge a model turn). Raw
    /// completions prompts always keep raw behaviour.</summary>
    public bool AllowSpecialTokensInContent { get; init; }
    /// <summary>The engine's prompt limit, for the early size check; null: no early check.</summary>
    public int? MaxPromptTokens { get; init; }
}

/// <summary>
/// Texts this server generated, with the ids that were sampled for them (per owner, bounded LRU).
/// Only texts that survive the template's trim unchanged are kept, so a returned message that
/// equals one maps back to exactly the sampled ids.
/// </summary>
internal sealed class GeneratedTextCache(int capacity)
{
    readonly LinkedList<(string Key, int[] Ids)> _order = new();
    readonly Dictionary<string, LinkedListNode<(string Key, int[] Ids)>> _map = new();
    readonly object _gate = new();

    static string Key(string? owner, string text) => (owner ?? "") + "\u0000" + text;

    public void Remember(string? owner, string text, IReadOnlyList<int> ids)
    {
        if (text.Length == 0 || text.Trim() != text || ids.Count == 0) return;
        lock (_gate)
        {
            var key = Key(owner, text);
            if (_map.Remove(key, out var old)) _order.Remove(old);
            _map[key] = _order.AddFirst((key, ids.ToArray()));
            while (_map.Count > capacity) { _map.Remove(_order.Last!.Value.Key); _order.RemoveLast(); }
        }
    }

    public bool TryGet(string? owner, string text, out int[] ids)
    {
        lock (_gate)
        {
            if (_map.TryGetValue(Key(owner, text), out var node)) { ids = node.Value.Ids; return true; }
        }
        ids = [];
        return false;
    }
}
