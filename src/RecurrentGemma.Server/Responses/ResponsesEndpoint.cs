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
    public static async Task Create(HttpContext context, ApiContext api, ResponseStore store, BackgroundResponses background)
    {
        var body = await RequestReader.ReadAsync(context, ResponsesJson.Default.CreateResponseRequest);
        var service = api.RequireReady();
        var v = ResponseRequestValidation.Validate(body, api.Limits);
        // In a conversation: its items are read under its lock (held until the answer is added, so
        // that two responses never extend it from the same point).
        var ct = api.RequestToken;
        var conversationLock = v.ConversationId is { } conversationId ? await LockConversationAsync(store, api.Owner, conversationId, ct) : null;
        bool handedOver = false;
        try
        {
            var (parent, conversation, history, sampled, messages, input) = Transcript(store, api.Owner, v);
            v = v with { Input = input };   // item references replaced by the items they name
            string id = ResponseInput.NewId("resp_");
            var run = new ResponseRun(new ResponseObject
            {
                Id = id, CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Status = v.Background ? "queued" : "in_progress", Model = service.ModelId,
                Instructions = v.Instructions, MaxOutputTokens = v.RequestedMaxOutputTokens, PreviousResponseId = parent?.Response.Id,
                Store = v.Store, Temperature = v.Sampling.Temperature, TopP = v.Sampling.TopP, ParallelToolCalls = v.ParallelToolCalls,
                Text = Json.WithFormat(v.TextFormat), Tools = v.ToolsJson, ToolChoice = v.ToolChoiceJson, User = v.User, Metadata = v.Metadata,
                TopLogprobs = v.TopLogprobs, ServiceTier = v.ServiceTier, Conversation = v.ConversationId is { } c ? new ConversationRefDto(c) : null,
                Background = v.Background,
            }, v.Tools is not null);
            var job = new ResponseJob
            {
                Run = run, Request = v, History = history, Sampled = sampled, Conversation = conversation, ConversationLock = conversationLock,
                Store = store, Owner = api.Owner,
                // A background response's records are written only while nobody has cancelled it.
                WriteGuard = v.Background ? background.GuardFor(api.Owner, id, store, () => run.Response.Status) : null,
            };
            var request = new TextGenerationRequest
            {
                Messages = messages, MaxTokens = v.MaxOutputTokens, Sampling = v.Sampling, Owner = api.Owner, Format = v.Format, Tools = v.Tools,
                Logprobs = v.Logprobs, TopLogprobs = v.Logprobs ? v.TopLogprobs ?? 0 : 0, Priority = ServiceTiers.Priority(v.ServiceTier),
                // Stored: the answer's state parks under the response id; a continuation copies its parent's.
                // In a conversation it parks under the conversation's id and the next response continues it.
                SessionId = v.ConversationId ?? (v.Store ? id : null), ParentSessionId = parent?.Response.Id,
                KeepState = v.Store || v.ConversationId is not null, SnapshotPrompt = false,
            };
            if (v.Background)
            {
                handedOver = true;   // the background job lets go of the conversation
                await StartInBackground(context, api, background, job, service, request);
            }
            else if (v.Stream) await Stream(context, api, job, service, request);
            else await Plain(context, api, job, service, request);
        }
        finally
        {
            if (!handedOver) conversationLock?.Dispose();
        }
    }

    static async Task Plain(HttpContext context, ApiContext api, ResponseJob job, InferenceService service, TextGenerationRequest request)
    {
        var ct = api.RequestToken;
        await using var generation = Start(service, request, ct);
        var events = generation.ReadAsync(ct).GetAsyncEnumerator(ct);
        await using var _ = events;
        bool ended = await job.RunAsync(events, () => events.MoveNextAsync().AsTask(), _ => Task.CompletedTask, api.MarkFirstToken, api.LogFailure);
        if (!ended) return;   // the client left
        api.Record(job.Usage, job.Finished?.FinishReason, job.Run.Text);
        await context.Response.WriteAsJsonAsync(job.Run.Response, ResponsesJson.Default.ResponseObject, contentType: "application/json", ct);
    }

    static async Task Stream(HttpContext context, ApiContext api, ResponseJob job, InferenceService service, TextGenerationRequest request)
    {
        var ct = api.RequestToken;
        await using var generation = Start(service, request, ct);
        var events = generation.ReadAsync(ct).GetAsyncEnumerator(ct);
        await using var _ = events;
        var sse = new ServerSentEvents(context.Response, api.KeepAlive);
        await sse.StartAsync(ct);
        async Task Send(IReadOnlyList<ResponseStreamEvent> list)
        {
            foreach (var e in list) await sse.WriteEventAsync(e.Type, e, ResponsesJson.Default.ResponseStreamEvent, ct);
        }
        try
        {
            if (await job.RunAsync(events, () => sse.NextAsync(events, ct), Send, api.MarkFirstToken, api.LogFailure))
                api.Record(job.Usage, job.Finished?.FinishReason, job.Run.Text);
        }
        catch (Exception e) when (e is not OperationCanceledException || api.ShutdownRequested)
        {
            var error = ApiError.From(e);
            if (error.Status == 500) api.LogFailure(e);
            try { await job.Fail(error.Code ?? "server_error", error.Message, error.Param, Send); }
            catch (Exception) when (context.RequestAborted.IsCancellationRequested) { }
        }
    }

    /// <summary>background: the job runs on with no request attached. The response comes back
    /// queued — or, with stream, its events as they are made, until the client leaves (the job
    /// goes on; GET /v1/responses/{id}?stream=true&amp;starting_after=n resumes them).</summary>
    static async Task StartInBackground(HttpContext context, ApiContext api, BackgroundResponses background,
        ResponseJob job, InferenceService service, TextGenerationRequest request)
    {
        // Linked to the shutdown only: the job outlives this request.
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(api.ShutdownToken);
        TextGeneration generation;
        try
        {
            generation = Start(service, request, cancel.Token);   // a bad request is still a 400 here
            job.Keep();   // queued: GET finds it from now on
        }
        catch
        {
            cancel.Dispose();
            job.ConversationLock?.Dispose();
            throw;
        }
        var queued = job.Run.Response;
        var log = background.Run(job, generation, cancel);
        if (!job.Request.Stream)
        {
            await context.Response.WriteAsJsonAsync(queued, ResponsesJson.Default.ResponseObject, contentType: "application/json", api.RequestToken);
            return;
        }
        await StoredResponsesEndpoints.StreamEvents(context, api, log.ReadAsync(-1, api.RequestToken));
    }

    /// <summary>What a response reads: the parent or the conversation (404 when named and not
    /// found), the items before the new input, the ids sampled for the earlier answers, and the
    /// chat messages of it all — instructions first, then the history, then the new input.</summary>
    internal static (StoredResponse? Parent, StoredConversation? Conversation, List<ResponseItemDto> History, Dictionary<string, int[]> Sampled, List<ChatMessage> Messages,
        List<ResponseItemDto> Input)
        Transcript(ResponseStore store, string? owner, ValidatedResponseRequest v)
    {
        StoredResponse? parent = null;
        if (v.PreviousResponseId is { } previous)
            parent = Read(store, owner, previous) ?? throw new ApiError(404, $"Previous response with id '{previous}' not found.",
                "invalid_request_error", "previous_response_id", "previous_response_not_found");
        StoredConversation? conversation = v.ConversationId is { } cid ? ConversationsEndpoints.Read(store, owner, cid, "conversation") : null;

        // The conversation so far (the parent's context and answer; never its instructions), then the new input.
        var history = conversation is not null ? [.. conversation.Items] : parent is null ? new List<ResponseItemDto>() : [.. parent.Context, .. parent.Response.Output];
        var input = ResponseInput.Resolve(v.Input, history);
        if (conversation is not null) ConversationsEndpoints.CheckNewIds(conversation.Items, input, "input");
        var sampled = new Dictionary<string, int[]>(conversation?.SampledIds ?? parent?.SampledIds ?? []);
        CheckCallIds(history, input);
        var messages = ResponseInput.ToMessages(v.Instructions, history, sampled);
        messages.AddRange(ResponseInput.ToMessages(null, input, new Dictionary<string, int[]>()));
        return (parent, conversation, history, sampled, messages, input);
    }

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

    /// <summary>A running response renews its hold on the conversation every RenewEvery, so one
    /// whose replica died lets go after RunHold at most, however long responses run.</summary>
    static readonly TimeSpan RunHold = TimeSpan.FromMinutes(1), RenewEvery = TimeSpan.FromSeconds(20);

    static async Task<IDisposable> LockConversationAsync(ResponseStore store, string? owner, string id, CancellationToken ct)
    {
        ConversationsEndpoints.Read(store, owner, id, "conversation");   // an unknown id is a 404, not a wait
        return await ConversationsEndpoints.LockAsync(store, owner, id, RunHold, ct, RenewEvery);
    }

    internal static StoredResponse? Read(ResponseStore store, string? owner, string id)
    {
        try { return store.Get(owner, id); }
        catch (ResponseStoreUnavailableException) { throw ApiError.Unavailable("The response store is unavailable; retry shortly."); }
    }
}
