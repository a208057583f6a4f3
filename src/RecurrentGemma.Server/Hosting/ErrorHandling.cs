using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// The one place where exceptions become HTTP errors: typed errors map to their status; anything
/// unexpected is logged with the request id and answered as a generic server_error (never a
/// stack trace). Bodiless 404/405 under the API get OpenAI's error envelope too.
/// </summary>
public static class ErrorHandling
{
    public static IApplicationBuilder UseOpenAiErrors(this IApplicationBuilder app)
    {
        app.Use(async (context, next) =>
        {
            try { await next(context); }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { }
            catch (BadHttpRequestException e)
            {
                var error = e.StatusCode == 413
                    ? new ApiError(413, "The request body is too large.", "invalid_request_error", null, "request_too_large")
                    : ApiError.Invalid($"Bad request: {e.Message}", null);
                await ApiErrorWriter.WriteAsync(context, error);
            }
            catch (Exception e)
            {
                var error = ApiError.From(e);
                if (error.Status >= 500)
                    context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("RecurrentGemma.Server.Errors")
                        .LogError(e, "Request {RequestId} {Method} {Path} failed", context.TraceIdentifier, context.Request.Method, context.Request.Path);
                await ApiErrorWriter.WriteAsync(context, error);
            }
        });
        app.UseStatusCodePages(async ctx =>
        {
            var http = ctx.HttpContext;
            if (ApiKeyAuth.IsOpenPath(http.Request.Path) || http.Response.HasStarted) return;
            var error = http.Response.StatusCode switch
            {
                404 => new ApiError(404, $"Unknown route {http.Request.Method} {http.Request.Path}.", "invalid_request_error", null, "not_found"),
                405 => new ApiError(405, $"Method {http.Request.Method} is not allowed on {http.Request.Path}.", "invalid_request_error", null, "method_not_allowed"),
                // The JSON endpoints declare what they accept; routing refuses any other body type before the handler runs.
                415 => new ApiError(415, $"Content-Type must be application/json, got '{ClipHeader(http.Request.ContentType)}'.", "invalid_request_error", null, "unsupported_media_type"),
                var s => new ApiError(s, $"HTTP {s}.", "invalid_request_error"),
            };
            await ApiErrorWriter.WriteAsync(http, error);
        });
        return app;
    }

    static string ClipHeader(string? value) => string.IsNullOrEmpty(value) ? "none" : value.Length > 40 ? value[..40] + "…" : value;
}
