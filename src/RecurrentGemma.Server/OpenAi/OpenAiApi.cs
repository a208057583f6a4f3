namespace RecurrentGemma.Server.OpenAi;

/// <summary>The OpenAI-compatible routes.</summary>
public static class OpenAiApi
{
    public static IEndpointRouteBuilder MapOpenAiApi(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").WithTags("OpenAI");
        v1.MapPost("/chat/completions", ChatCompletionsEndpoint.Handle)
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<ChatCompletionRequest>("application/json")
            .Produces<ChatCompletionResponse>(200, "application/json", "text/event-stream")
            .Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(401).Produces<ErrorEnvelope>(404).Produces<ErrorEnvelope>(429).Produces<ErrorEnvelope>(503)
            .WithSummary("Chat completion (stream: true for server-sent chat.completion.chunk events)");
        v1.MapGet("/chat/completions", StoredChatCompletions.List)
            .Produces<ChatCompletionListDto>().Produces<ErrorEnvelope>(400)
            .WithSummary("Stored chat completions (store: true), oldest first; limit, order, after, model, metadata[key]=value");
        v1.MapGet("/chat/completions/{completion_id}", StoredChatCompletions.Get)
            .Produces<ChatCompletionResponse>().Produces<ErrorEnvelope>(404).WithSummary("A stored chat completion");
        v1.MapPost("/chat/completions/{completion_id}", StoredChatCompletions.Update)
            .Accepts<UpdateChatCompletionRequest>("application/json").Produces<ChatCompletionResponse>().Produces<ErrorEnvelope>(404)
            .WithSummary("Replace a stored chat completion's metadata");
        v1.MapDelete("/chat/completions/{completion_id}", StoredChatCompletions.Delete)
            .Produces<ChatCompletionDeletedDto>().Produces<ErrorEnvelope>(404).WithSummary("Delete a stored chat completion");
        v1.MapGet("/chat/completions/{completion_id}/messages", StoredChatCompletions.Messages)
            .Produces<ChatMessageListDto>().Produces<ErrorEnvelope>(404).WithSummary("The request messages of a stored chat completion");
        v1.MapPost("/completions", CompletionsEndpoint.Handle)
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<CompletionRequest>("application/json")
            .Produces<CompletionResponse>(200, "application/json", "text/event-stream")
            .Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(429).Produces<ErrorEnvelope>(503)
            .WithSummary("Text completion of one or several prompts");
        v1.MapPost("/responses", Responses.ResponsesEndpoint.Create)
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<Responses.CreateResponseRequest>("application/json")
            .Produces<Responses.ResponseObject>(200, "application/json", "text/event-stream")
            .Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(401).Produces<ErrorEnvelope>(404).Produces<ErrorEnvelope>(429).Produces<ErrorEnvelope>(503)
            .WithSummary("Create a response (stream: true for named server-sent events); previous_response_id continues a stored one");
        v1.MapPost("/responses/input_tokens", Responses.InputTokensEndpoint.Count)
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<Responses.CreateResponseRequest>("application/json")
            .Produces<Responses.InputTokensDto>().Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(404).Produces<ErrorEnvelope>(503)
            .WithSummary("How many input tokens the same POST /v1/responses would read (instructions, conversation or previous response, input, tools)");
        v1.MapGet("/responses/{id}", Responses.StoredResponsesEndpoints.Get)
            .Produces<Responses.ResponseObject>(200, "application/json", "text/event-stream").Produces<ErrorEnvelope>(404)
            .WithSummary("A stored response; stream=true (with starting_after) streams a background response's events");
        v1.MapDelete("/responses/{id}", Responses.StoredResponsesEndpoints.Delete)
            .Produces<Responses.ResponseDeletedDto>().Produces<ErrorEnvelope>(404).WithSummary("Delete a stored response: its transcript and its state in every tier");
        v1.MapPost("/responses/{id}/cancel", Responses.StoredResponsesEndpoints.Cancel)
            .Produces<Responses.ResponseObject>().Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(404)
            .WithSummary("Cancel a queued or running background response (it keeps its output so far, status cancelled)");
        v1.MapGet("/responses/{id}/input_items", Responses.StoredResponsesEndpoints.InputItems)
            .Produces<Responses.ResponseItemListDto>().Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(404)
            .WithSummary("The items a stored response was generated from (newest first; limit, order, after, before)");
        MapConversations(v1);
        v1.MapGet("/engine/status", Ui.Playground.EngineStatus).WithTags("Engine")
            .Produces<Ui.EngineStatusDto>().WithSummary("Slots, parked states, running and waiting requests, recent step time (the playground's engine panel)");
        v1.MapGet("/models", ModelsAndTokenizeEndpoints.List).Produces<ModelListDto>().WithSummary("The served model");
        v1.MapGet("/models/{id}", ModelsAndTokenizeEndpoints.Get).Produces<ModelDto>().Produces<ErrorEnvelope>(404);

        // The tokenizer endpoints do real work on the caller's text: same per-client limits.
        app.MapPost("/tokenize", ModelsAndTokenizeEndpoints.Tokenize).WithTags("Tokenizer")
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<TokenizeRequest>("application/json").Produces<TokenizeResponse>().Produces<ErrorEnvelope>(400);
        app.MapPost("/detokenize", ModelsAndTokenizeEndpoints.Detokenize).WithTags("Tokenizer")
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<DetokenizeRequest>("application/json").Produces<DetokenizeResponse>().Produces<ErrorEnvelope>(400);
        return app;
    }

    static void MapConversations(RouteGroupBuilder v1)
    {
        var c = v1.MapGroup("/conversations").WithTags("Conversations");
        c.MapPost("", Responses.ConversationsEndpoints.Create)
            .Accepts<Responses.CreateConversationRequest>("application/json").Produces<Responses.ConversationDto>().Produces<ErrorEnvelope>(400)
            .WithSummary("Create a conversation (metadata, up to 20 items); responses with conversation continue it");
        c.MapGet("/{conversation_id}", Responses.ConversationsEndpoints.Get)
            .Produces<Responses.ConversationDto>().Produces<ErrorEnvelope>(404).WithSummary("A conversation");
        c.MapPost("/{conversation_id}", Responses.ConversationsEndpoints.Update)
            .Accepts<Responses.UpdateConversationRequest>("application/json").Produces<Responses.ConversationDto>().Produces<ErrorEnvelope>(404)
            .WithSummary("Replace a conversation's metadata");
        c.MapDelete("/{conversation_id}", Responses.ConversationsEndpoints.Delete)
            .Produces<Responses.ConversationDeletedDto>().Produces<ErrorEnvelope>(404).WithSummary("Delete a conversation: its items and its state in every tier");
        c.MapGet("/{conversation_id}/items", Responses.ConversationsEndpoints.ListItems)
            .Produces<Responses.ResponseItemListDto>().Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(404)
            .WithSummary("A conversation's items (newest first; limit, order, after)");
        c.MapPost("/{conversation_id}/items", Responses.ConversationsEndpoints.AddItems)
            .Accepts<Responses.CreateConversationItemsRequest>("application/json").Produces<Responses.ResponseItemListDto>().Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(404)
            .WithSummary("Append up to 20 items to a conversation");
        c.MapGet("/{conversation_id}/items/{item_id}", Responses.ConversationsEndpoints.GetItem)
            .Produces<Responses.ResponseItemDto>().Produces<ErrorEnvelope>(404).WithSummary("One item of a conversation");
        c.MapDelete("/{conversation_id}/items/{item_id}", Responses.ConversationsEndpoints.DeleteItem)
            .Produces<Responses.ConversationDto>().Produces<ErrorEnvelope>(404).WithSummary("Delete one item; returns the conversation");
    }
}
