using RecurrentGemma.Inference;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>POST /v1/completions: prompt (text or token ids, one or several) → text_completion objects.</summary>
public static class CompletionsEndpoint
{
    public static async Task Handle(HttpContext context, ApiContext api)
    {
        var body = await RequestReader.ReadAsync(context, OpenAiJson.Default.CompletionRequest);
        var service = api.RequireReady();
        var request = RequestValidation.Completion(body, api.Limits, context.Request.Headers["X-Session-Id"].FirstOrDefault(), api.Owner);
        var first = request.Generations[0];
        int n = first.N, total = n * request.Generations.Count;   // with best_of: the candidates generated
        bool showLogprobs = request.ShowLogprobs ?? first.Logprobs;
        string id = ServerSentEvents.NewId("cmpl-");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var ct = api.RequestToken;
        var events = GenerationMerger.Start(service, request, ct, out var promptIds);
        await using var _ = events;
        var echoes = request.Generations.Select(g => first.Echo ? EchoText(g, service) : "").ToArray();   // decoded once per prompt
        string Echo(int index) => echoes[index / n];

        if (!request.Stream)
        {
            var texts = Enumerable.Range(0, total).Select(i => new System.Text.StringBuilder(Echo(i))).ToArray();
            var logprobs = Enumerable.Range(0, total).Select(_ => new LogprobsBuilder()).ToArray();
            var ids = Enumerable.Range(0, total).Select(_ => new List<int>()).ToArray();
            var finish = new string[total];
            UsageReport? usage = null;
            while (await events.MoveNextAsync())
            {
                switch (events.Current)
                {
                    case PromptLogprobs pl: logprobs[pl.Index].AddPrompt(pl.Tokens); break;
                    case TextDelta d:
                        api.MarkFirstToken(); logprobs[d.Index].Add(d.Logprobs, texts[d.Index].Length); texts[d.Index].Append(d.Text); ids[d.Index].AddRange(d.TokenIds);
                        break;
                    case ChoiceFinished f: finish[f.Index] = f.FinishReason; break;
                    case UsageReport u: usage = u; break;
                }
            }
            var picked = BestOf.Pick(logprobs.Select(l => l.Sampled).ToArray(), n, request.Returned ?? n);   // candidate index per returned choice
            api.Record(usage, finish[picked[0]], texts[picked[0]].ToString());
            var choices = picked.Select((i, at) => new CompletionChoiceDto(at, texts[i].ToString(),
                showLogprobs ? logprobs[i].Build() : null, finish[i] ?? "stop",
                request.ReturnTokenIds ? promptIds[i / n] : null, request.ReturnTokenIds ? ids[i] : null)).ToList();
            await context.Response.WriteAsJsonAsync(new CompletionResponse(id, "text_completion", created, service.ModelId, api.Fingerprint, choices,
                ChatCompletionsEndpoint.Usage(usage)), OpenAiJson.Default.CompletionResponse, contentType: "application/json", ct);
            return;
        }

        var sse = new ServerSentEvents(context.Response, api.KeepAlive);
        var tally = new StreamTally(request, promptIds);
        CompletionResponse Chunk(List<CompletionChoiceDto> choices, UsageDto? usage = null) =>
            new(id, "text_completion", created, service.ModelId, api.Fingerprint, choices, usage ?? tally.Running(choices.Count));
        // vLLM's return_token_ids: a choice's first chunk carries its prompt's ids, each chunk the ids it completes.
        IReadOnlyList<int>? PromptIds(int index) => tally.PromptIdsOnce(index, index / n);
        await sse.StartAsync(ct);
        try
        {
            var offsets = new int[total];
            if (first.Echo)
                for (int i = 0; i < total; i++)
                {
                    offsets[i] = Echo(i).Length;
                    await sse.WriteAsync(Chunk([new CompletionChoiceDto(i, Echo(i), null, null, PromptIds(i))]), OpenAiJson.Default.CompletionResponse, ct);
                }
            UsageReport? usage = null;
            string? firstFinish = null;
            var streamedText = new System.Text.StringBuilder();
            while (await sse.NextAsync(events, ct))
            {
                switch (events.Current)
                {
                    case PromptLogprobs pl:
                    {
                        // The echoed prompt went out first; its logprobs follow in a chunk of their own.
                        var prompt = new LogprobsBuilder();
                        prompt.AddPrompt(pl.Tokens);
                        await sse.WriteAsync(Chunk([new CompletionChoiceDto(pl.Index, "", prompt.Build(), null, PromptIds(pl.Index))]), OpenAiJson.Default.CompletionResponse, ct);
                        break;
                    }
                    case TextDelta d when d.Text.Length > 0 || d.Logprobs.Count > 0 || (request.ReturnTokenIds && d.TokenIds.Count > 0):
                        api.MarkFirstToken();
                        streamedText.Append(d.Text);
                        tally.Add(d);
                        var lp = new LogprobsBuilder();
                        lp.Add(d.Logprobs, offsets[d.Index]);
                        offsets[d.Index] += d.Text.Length;
                        await sse.WriteAsync(Chunk([new CompletionChoiceDto(d.Index, d.Text, first.Logprobs ? lp.Build() : null, null,
                            PromptIds(d.Index), request.ReturnTokenIds ? d.TokenIds : null)]), OpenAiJson.Default.CompletionResponse, ct);
                        break;
                    case TextDelta d: tally.Add(d); break;
                    case ChoiceFinished f when f.FinishReason != "cancelled":
                        firstFinish ??= f.FinishReason;
                        await sse.WriteAsync(Chunk([new CompletionChoiceDto(f.Index, "", null, f.FinishReason, PromptIds(f.Index))]), OpenAiJson.Default.CompletionResponse, ct);
                        break;
                    case UsageReport u: usage = u; break;
                }
            }
            api.Record(usage, firstFinish, streamedText.ToString());
            if (request.IncludeUsage && usage is not null) await sse.WriteAsync(Chunk([], ChatCompletionsEndpoint.Usage(usage)), OpenAiJson.Default.CompletionResponse, ct);
            await sse.DoneAsync(ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || api.ShutdownRequested)
        {
            await api.EndStreamAsync(sse, e);
        }
    }

    /// <summary>What "echo" prepends: the prompt's text, or the text its token ids decode to.</summary>
    static string EchoText(TextGenerationRequest g, InferenceService service) =>
        g.Prompt ?? (g.PromptTokenIds is { } ids ? service.Tokenizer.Decode(ids) : "");

    /// <summary>The legacy logprobs object: tokens, token_logprobs, top_logprobs, text_offset.</summary>
    sealed class LogprobsBuilder
    {
        readonly CompletionLogprobsDto _dto = new([], [], [], []);

        /// <summary>The sampled tokens' log-probabilities (not the echoed prompt's): what best_of ranks by.</summary>
        public List<float> Sampled { get; } = [];

        /// <summary>The prompt's tokens, from text offset 0 (they are the echoed text).</summary>
        public void AddPrompt(IReadOnlyList<PromptTokenLogprob> tokens)
        {
            int offset = 0;
            foreach (var t in tokens)
            {
                _dto.Tokens.Add(t.Token);
                _dto.TokenLogprobs.Add(t.Logprob);
                Dictionary<string, float>? top = null;
                if (t.Top is { } alternatives)
                {
                    top = [];
                    foreach (var a in alternatives) top.TryAdd(a.Token, a.Logprob);
                }
                _dto.TopLogprobs.Add(top);
                _dto.TextOffset.Add(offset);
                offset += t.Token.Length;
            }
        }

        public void Add(IReadOnlyList<TokenLogprobText> tokens, int offset)
        {
            foreach (var t in tokens)
            {
                _dto.Tokens.Add(t.Token);
                _dto.TokenLogprobs.Add(t.Logprob);
                Sampled.Add(t.Logprob);
                var top = new Dictionary<string, float>();
                foreach (var a in t.Top) top.TryAdd(a.Token, a.Logprob);
                _dto.TopLogprobs.Add(top);
                _dto.TextOffset.Add(offset);
                offset += t.Token.Length;
            }
        }

        public CompletionLogprobsDto Build() => _dto;
    }
}
