using RecurrentGemma.Inference;
using RecurrentGemma.Server.OpenAi;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// POST /v1/responses. A stored response is its transcript (in the <see cref="ResponseStore"/>)
/// plus the Griffin state parked after its answer under the response id; a continuation
/// (previous_response_id) renders the parent's transcript plus the new input and continues a
/// copy of the parent's state, so only the new input is prefilled and the parent can be
/// continued again. Should every tier have lost that state, the same transcript is simply
/// prefilled: the answer is the same. A response in a conversation (<c>conversation</c>) reads
/// the conversation's items instead, adds its input and answer to them, and continues the state
/// parked under the conversation's id (see <see cref="ConversationsEndpoints"/>).
/// </summary>
public static class ResponsesEndpoint
{
    public static async Task Create(HttpContext context, ApiContext api, ResponseStore store)
    {
        var body = await RequestReader.ReadAsync(context, ResponsesJson.Default.CreateResponseRequest);
        var service = api.RequireReady();
        var v = ResponseRequestValidation.Validate(body, api.Limits);
        // In a conversation: its items are read under its lock (held until the answer is added, so
        // that two responses never extend it from the same point).
        var ct = api.RequestToken;
        using var conversationLock = v.ConversationId is { } conversationId ? await LockConversationAsync(store, api.Owner, conversationId, ct) : null;
        var (parent, conversation, history, sampled, messages) = Transcript(store, api.Owner, v);

        string id = ResponseInput.NewId("resp_");
        var run = new ResponseRun(new ResponseObject
        {
            Id = id, CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Status = "in_progress", Model = service.ModelId,
            Instructions = v.Instructions, MaxOutputTokens = v.RequestedMaxOutputTokens, PreviousResponseId = parent?.Response.Id,
            Store = v.Store, Temperature = v.Sampling.Temperature, TopP = v.Sampling.TopP, ParallelToolCalls = v.ParallelToolCalls,
            Text = Json.WithFormat(v.TextFormat), Tools = v.ToolsJson, ToolChoice = v.ToolChoiceJson, User = v.User, Metadata = v.Metadata,
            TopLogprobs = v.TopLogprobs, ServiceTier = v.ServiceTier, Conversation = v.ConversationId is { } c ? new ConversationRefDto(c) : null,
        }, v.Tools is not null);

        var generation = Start(service, new TextGenerationRequest
        {
            Messages = messages, MaxTokens = v.MaxOutputTokens, Sampling = v.Sampling, Owner = api.Owner, Format = v.Format, Tools = v.Tools,
            Logprobs = v.Logprobs, TopLogprobs = v.Logprobs ? v.TopLogprobs ?? 0 : 0, Priority = ServiceTiers.Priority(v.ServiceTier),
            // Stored: the answer's state parks under the response id; a continuation copies its parent's.
            // In a conversation it parks under the conversation's id and the next response continues it.
            SessionId = v.ConversationId ?? (v.Store ? id : null), ParentSessionId = parent?.Response.Id,
            KeepState = v.Store || v.ConversationId is not null, SnapshotPrompt = false,
        }, ct);
        await using var _ = generation;
        var events = generation.ReadAsync(ct).GetAsyncEnumerator(ct);
        await using var __ = events;

        void Keep(ChoiceFinished? finished)
        {
            if (finished is { TokenIds.Count: > 0 } && run.Output.Count > 0) sampled[run.Output[0].Id] = [.. finished.TokenIds];
            if (conversation is not null && finished is not null)
            {
                // The input and the answer join the conversation (not a failed run's).
                store.Put(api.Owner, conversation with { Items = [.. history, .. v.Input, .. run.Output], SampledIds = sampled });
                conversationLock?.Dispose();
            }
            if (!v.Store) return;
            store.Put(api.Owner, new StoredResponse
            {
                Response = run.Response, Context = [.. history, .. v.Input], OwnInputCount = v.Input.Count, SampledIds = sampled,
            });
        }

        if (!v.Stream)
        {
            ChoiceFinished? finished = null;
            UsageReport? usage = null;
            try
            {
                while (await events.MoveNextAsync())
                {
                    switch (events.Current)
                    {
                        case TextDelta d: api.MarkFirstToken(); run.Push(d.Text, Logprobs(d)); break;
                        case ChoiceFinished f: finished = f; break;
                        case UsageReport u: usage = u; break;
                    }
                }
                if (finished is null || finished.FinishReason == "cancelled") return;   // the client left
                run.Finish(finished.FinishReason, usage);
            }
            catch (GenerationFailedException e)
            {
                api.LogFailure(e);
                run.Fail("server_error", "The server had an error while generating this response.", null);
            }
            api.Record(usage, finished?.FinishReason, run.Text);
            Keep(finished);
            await context.Response.WriteAsJsonAsync(run.Response, ResponsesJson.Default.ResponseObject, contentType: "application/json", ct);
            return;
        }

        var sse = new ServerSentEvents(context.Response, api.KeepAlive);
        await sse.StartAsync(ct);
        async Task Send(IEnumerable<ResponseStreamEvent> list)
        {
            foreach (var e in list) await sse.WriteEventAsync(e.Type, e, ResponsesJson.Default.ResponseStreamEvent, ct);
        }
        try
        {
            await Send(run.Start());
            ChoiceFinished? finished = null;
            UsageReport? usage = null;
            for (bool more = await sse.NextAsync(events, ct); more; more = await sse.NextAsync(events, ct))
            {
                switch (events.Current)
                {
                    case TextDelta d: api.MarkFirstToken(); await Send(run.Push(d.Text, Logprobs(d))); break;
                    case ChoiceFinished f: finished = f; break;
                    case UsageReport u: usage = u; break;
                }
            }
            if (finished is null || finished.FinishReason == "cancelled") return;
            var closing = run.Finish(finished.FinishReason, usage);
            api.Record(usage, finished.FinishReason, run.Text);
            Keep(finished);   // before the last event: a client that continues at once finds it
            await Send(closing);
        }
        catch (Exception e) when (e is not OperationCanceledException || api.ShutdownRequested)
        {
            var error = ApiError.From(e);
            if (error.Status == 500) api.LogFailure(e);
            try
            {
                var failed = run.Fail(error.Code ?? "server_error", error.Message, error.Param);
                Keep(null);
                await Send(failed);
            }
            catch (Exception) when (context.RequestAborted.IsCancellationRequested) { }
        }
    }

    /// <summary>What a response reads: the parent or the conversation (404 when named and not
    /// found), the items before the new input, the ids sampled for the earlier answers, and the
    /// chat messages of it all — instructions first, then the history, then the new input.</summary>
    internal static (StoredResponse? Parent, StoredConversation? Conversation, List<ResponseItemDto> History, Dictionary<string, int[]> Sampled, List<ChatMessage> Messages)
        Transcript(ResponseStore store, string? owner, ValidatedResponseRequest v)
    {
        StoredResponse? parent = null;
        if (v.PreviousResponseId is { } previous)
            parent = Read(store, owner, previous) ?? throw new ApiError(404, $"Previous response with id '{previous}' not found.",
                "invalid_request_error", "previous_response_id", "previous_response_not_found");
        StoredConversation? conversation = null;
        if (v.ConversationId is { } cid)
        {
            conversation = ConversationsEndpoints.Read(store, owner, cid, "conversation");
            ConversationsEndpoints.CheckNewIds(conversation.Items, v.Input, "input");
        }

        // The conversation so far (the parent's context and answer; never its instructions), then the new input.
        var history = conversation is not null ? [.. conversation.Items] : parent is null ? new List<ResponseItemDto>() : [.. parent.Context, .. parent.Response.Output];
        var sampled = new Dictionary<string, int[]>(conversation?.SampledIds ?? parent?.SampledIds ?? []);
        CheckCallIds(history, v.Input);
        var messages = ResponseInput.ToMessages(v.Instructions, history, sampled);
        messages.AddRange(ResponseInput.ToMessages(null, v.Input, new Dictionary<string, int[]>()));
        return (parent, conversation, history, sampled, messages);
    }

    static List<ChatTokenLogprobDto>? Logprobs(TextDelta d) => d.Logprobs.Count == 0 ? null : d.Logprobs.Select(ChatCompletionsEndpoint.ToDto).ToList();

    /// <summary>Starts the generation; the inference layer's field names become this API's.</summary>
    static TextGeneration Start(InferenceService service, TextGenerationRequest request, CancellationToken ct)
    {
        try { return service.Start(request, ct); }
        catch (InvalidRequestException e) { throw Renamed(e); }
    }

    /// <summary>A request error of the inference layer, its field named as this API names it.</summary>
    internal static ApiError Renamed(InvalidRequestException e)
    {
        string? param = e.Param switch
        {
            null => null,
            var p when p.StartsWith("response_format.json_schema.schema", StringComparison.Ordinal) => "text.format.schema" + p["response_format.json_schema.schema".Length..],
            var p when p.StartsWith("response_format", StringComparison.Ordinal) => "text.format",
            var p when p.StartsWith("messages", StringComparison.Ordinal) => "input",
            var p => p,
        };
        return ApiError.Invalid(e.Message, param, e.Code);
    }

    /// <summary>Each function_call_output must answer a call made earlier in the conversation.</summary>
    static void CheckCallIds(List<ResponseItemDto> history, List<ResponseItemDto> input)
    {
        var calls = history.Where(i => i.Type == "function_call").Select(i => i.CallId!).ToHashSet();
        for (int i = 0; i < input.Count; i++)
        {
            if (input[i].Type == "function_call") calls.Add(input[i].CallId!);
            else if (input[i].Type == "function_call_output" && !calls.Contains(input[i].CallId!))
                throw ApiError.Invalid($"input[{i}].call_id '{input[i].CallId}' answers no function_call of this conversation.", $"input[{i}].call_id");
        }
    }

    /// <summary>A response runs for minutes at most; a holder that died lets go after this long.</summary>
    static readonly TimeSpan RunHold = TimeSpan.FromMinutes(15);

    static async Task<IDisposable> LockConversationAsync(ResponseStore store, string? owner, string id, CancellationToken ct)
    {
        ConversationsEndpoints.Read(store, owner, id, "conversation");   // an unknown id is a 404, not a wait
        return await ConversationsEndpoints.LockAsync(store, owner, id, RunHold, ct);
    }

    internal static StoredResponse? Read(ResponseStore store, string? owner, string id)
    {
        try { return store.Get(owner, id); }
        catch (ResponseStoreUnavailableException) { throw ApiError.Unavailable("The response store is unavailable; retry shortly."); }
    }
}
