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
        v1.MapPost("/completions", CompletionsEndpoint.Handle)
            .RequireRateLimiting(Hosting.ServiceRegistration.PerKeyPolicy)
            .Accepts<CompletionRequest>("application/json")
            .Produces<CompletionResponse>(200, "application/json", "text/event-stream")
            .Produces<ErrorEnvelope>(400).Produces<ErrorEnvelope>(429).Produces<ErrorEnvelope>(503)
            .WithSummary("Text completion of one or several prompts");
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
}
