using RecurrentGemma.Engine;
using RecurrentGemma.Inference;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>An error to send as OpenAI's envelope {"error": {message, type, param, code}}.</summary>
public sealed class ApiError(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    public ErrorEnvelope Envelope => new(new ErrorBody(Message, Type, Param, Code));

    public static ApiError Invalid(string message, string? param, string? code = null) => new(400, message, "invalid_request_error", param, code);
    public static ApiError ModelNotFound(string model) => new(404, $"The model '{model}' does not exist.", "invalid_request_error", "model", "model_not_found");
    public static ApiError Unauthorized() => new(401, "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'.", "authentication_error", null, "invalid_api_key");
    public static ApiError Overloaded(string message) => new(429, message, "rate_limit_error", null, "rate_limit_exceeded");
    public static ApiError Unavailable(string message) => new(503, message, "service_unavailable", null, "service_unavailable");
    public static ApiError Server() => new(500, "The server had an error while processing your request.", "server_error", null, "internal_error");

    /// <summary>The one place where typed errors of the lower layers become HTTP errors.</summary>
    public static ApiError From(Exception e) => e switch
    {
        ApiError a => a,
        InvalidRequestException i => Invalid(i.Message, i.Param, i.Code),
        InvalidGenerationRequestException g => Invalid(g.Message, g.Param),
        EngineOverloadedException o => Overloaded(o.Message),
        EngineStoppedException => Unavailable("The server is shutting down."),
        Responses.ResponseStoreUnavailableException => Unavailable("The response store is unavailable; retry shortly."),
        _ => Server(),
    };
}

public static class ApiErrorWriter
{
    public static async Task WriteAsync(HttpContext context, ApiError error)
    {
        if (context.Response.HasStarted) return;
        context.Response.Clear();
        context.Response.StatusCode = error.Status;
        if (error.Status is 429 or 503) context.Response.Headers.RetryAfter = "1";
        await context.Response.WriteAsJsonAsync(error.Envelope, OpenAiJson.Default.ErrorEnvelope, contentType: "application/json", context.RequestAborted);
    }

    public static IResult Result(ApiError error) => new ErrorResult(error);

    sealed class ErrorResult(ApiError error) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext) => WriteAsync(httpContext, error);
    }
}
