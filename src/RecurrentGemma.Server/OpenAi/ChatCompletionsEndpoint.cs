using RecurrentGemma.Inference;
using RecurrentGemma.Text;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>POST /v1/chat/completions: one response, or a stream of chat.completion.chunk events.</summary>
public static class ChatCompletionsEndpoint
{
    public static async Task Handle(HttpContext context, ApiContext api, Responses.ResponseStore store, ILoggerFactory loggers)
    {
        var body = await RequestReader.ReadAsync(context, OpenAiJson.Default.ChatCompletionRequest);
        var service = api.RequireReady();
        var request = RequestValidation.Chat(body, api.Limits, context.Request.Headers["X-Session-Id"].FirstOrDefault(), api.Owner);
        // store: true keeps the finished completion for GET /v1/chat/completions (StoredChatCompletions).
        var metadata = Responses.ResponseRequestValidation.Metadata(body.Metadata);
        void Keep(ChatCompletionResponse completion)
        {
            if (body.Store == true)
                StoredChatCompletions.Save(store, api.Owner, completion, metadata, body.Messages!, loggers.CreateLogger(typeof(StoredChatCompletions).FullName!));
        }
        var generation = request.Generations[0];
        string id = ServerSentEvents.NewId("chatcmpl-");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var ct = api.RequestToken;
        var events = GenerationMerger.Start(service, request, ct, out var promptIds);
        await using var _ = events;

        if (!request.Stream)
        {
            var answers = new ChatAnswers(generation.N, generation.Tools is not null, generation.Logprobs, request.ReturnTokenIds);
            while (await events.MoveNextAsync())
            {
                if (events.Current is TextDelta) api.MarkFirstToken();
                answers.Add(events.Current);
            }
            api.Record(answers.Usage, answers.FirstFinish, answers.FirstText);
            var choices = answers.Choices();
            var completion = new ChatCompletionResponse(id, "chat.completion", created, service.ModelId, api.Fingerprint, choices, Usage(answers.Usage),
                request.ReturnTokenIds ? promptIds[0] : null, request.ServiceTier);
            if (answers.FirstFinish != "cancelled") Keep(completion);
            await context.Response.WriteAsJsonAsync(completion, OpenAiJson.Default.ChatCompletionResponse, contentType: "application/json", ct);
            return;
        }

        var sse = new ServerSentEvents(context.Response, api.KeepAlive);
        var tally = new StreamTally(request, promptIds);
        ChatCompletionChunk Chunk(List<ChatChunkChoiceDto> choices, UsageDto? usage = null) =>
            new(id, "chat.completion.chunk", created, service.ModelId, api.Fingerprint, choices, usage ?? tally.Running(choices.Count), tally.PromptIdsOnce(), request.ServiceTier);
        await sse.StartAsync(ct);
        try
        {
            for (int i = 0; i < generation.N; i++)
                await sse.WriteAsync(Chunk([new ChatChunkChoiceDto(i, new DeltaDto("assistant", ""), null, null)]), OpenAiJson.Default.ChatCompletionChunk, ct);
            UsageReport? usage = null;
            string? firstFinish = null;
            var streamedText = new System.Text.StringBuilder();
            var toolStreams = generation.Tools is null ? null : Enumerable.Range(0, generation.N).Select(_ => new ToolCallStream()).ToArray();
            var held = toolStreams is null ? null : Enumerable.Range(0, generation.N).Select(_ => new HeldTokens(generation.Logprobs, request.ReturnTokenIds)).ToArray();
            ChatChunkChoiceDto Piece(int index, DeltaDto delta)
            {
                var (logprobs, ids) = held![index].Take();
                return new ChatChunkChoiceDto(index, delta, logprobs, null, ids);
            }
            var kept = body.Store == true ? new ChatAnswers(generation.N, generation.Tools is not null, generation.Logprobs, request.ReturnTokenIds) : null;
            for (bool more = await sse.NextAsync(events, ct); more; more = await sse.NextAsync(events, ct))
            {
                kept?.Add(events.Current);
                switch (events.Current)
                {
                    case TextDelta d when toolStreams is not null:
                        api.MarkFirstToken();
                        streamedText.Append(d.Text);
                        held![d.Index].Add(d);
                        tally.Add(d);
                        foreach (var delta in toolStreams[d.Index].Push(d.Text))
                            await sse.WriteAsync(Chunk([Piece(d.Index, delta)]), OpenAiJson.Default.ChatCompletionChunk, ct);
                        break;
                    case ChoiceFinished f when toolStreams is not null && f.FinishReason != "cancelled":
                        var closing = toolStreams[f.Index].Finish();
                        // Tokens whose text is still held (the end of a call block) go out with the last pieces.
                        if (closing.Count == 0 && held![f.Index].Any) closing.Add(new DeltaDto(null, null));
                        foreach (var delta in closing)
                            await sse.WriteAsync(Chunk([Piece(f.Index, delta)]), OpenAiJson.Default.ChatCompletionChunk, ct);
                        var reason = toolStreams[f.Index].MadeCalls ? "tool_calls" : f.FinishReason;
                        firstFinish ??= reason;
                        await sse.WriteAsync(Chunk([new ChatChunkChoiceDto(f.Index, new DeltaDto(null, null), null, reason)]), OpenAiJson.Default.ChatCompletionChunk, ct);
                        break;
                    case TextDelta d when d.Text.Length > 0 || d.Logprobs.Count > 0 || (request.ReturnTokenIds && d.TokenIds.Count > 0):
                        api.MarkFirstToken();
                        streamedText.Append(d.Text);
                        tally.Add(d);
                        await sse.WriteAsync(Chunk([new ChatChunkChoiceDto(d.Index, new DeltaDto(null, d.Text),
                            generation.Logprobs ? new ChatLogprobsDto(d.Logprobs.Select(ToDto).ToList()) : null, null, request.ReturnTokenIds ? d.TokenIds : null)]), OpenAiJson.Default.ChatCompletionChunk, ct);
                        break;
                    case TextDelta d: tally.Add(d); break;
                    case ChoiceFinished f when f.FinishReason != "cancelled":
                        firstFinish ??= f.FinishReason;
                        await sse.WriteAsync(Chunk([new ChatChunkChoiceDto(f.Index, new DeltaDto(null, null), null, f.FinishReason)]), OpenAiJson.Default.ChatCompletionChunk, ct);
                        break;
                    case UsageReport u: usage = u; break;
                }
            }
            api.Record(usage, firstFinish, streamedText.ToString());
            if (kept is not null && kept.FirstFinish != "cancelled")
                Keep(new ChatCompletionResponse(id, "chat.completion", created, service.ModelId, api.Fingerprint, kept.Choices(), Usage(usage), null, request.ServiceTier));
            if (request.IncludeUsage && usage is not null) await sse.WriteAsync(Chunk([], Usage(usage)), OpenAiJson.Default.ChatCompletionChunk, ct);
            await sse.DoneAsync(ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || api.ShutdownRequested)
        {
            await api.EndStreamAsync(sse, e);
        }
    }

    internal static ChatTokenLogprobDto ToDto(TokenLogprobText t) => new(t.Token, t.Logprob, t.Bytes.Select(b => (int)b).ToArray(),
        t.Top.Select(a => new ChatTopLogprobDto(a.Token, a.Logprob, a.Bytes.Select(b => (int)b).ToArray())).ToList());

    internal static UsageDto Usage(UsageReport? u) => u is null
        ? new UsageDto(0, 0, 0, new PromptTokensDetailsDto(0))
        : new UsageDto(u.PromptTokens, u.CompletionTokens, u.PromptTokens + u.CompletionTokens, new PromptTokensDetailsDto(u.CachedTokens));
}
