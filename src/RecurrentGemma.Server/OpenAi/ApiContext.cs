using Microsoft.Extensions.Options;
using RecurrentGemma.Engine;
using RecurrentGemma.Inference;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// What an endpoint needs about the current request, resolved once per request: the served
/// model (or a 503), the caller's owner key, the limits, and a cancellation token that fires when
/// the client disconnects or the shutdown grace period ends.
/// </summary>
public sealed class ApiContext : IDisposable
{
    readonly ModelHost _host;
    readonly InFlightRequests _inFlight;
    readonly ILogger<ApiContext> _log;
    readonly CancellationTokenSource _token;
    readonly HttpContext _http;
    readonly long _started = System.Diagnostics.Stopwatch.GetTimestamp();

    public ApiContext(IHttpContextAccessor accessor, ModelHost host, InFlightRequests inFlight, IOptions<ApiOptions> api,
        IOptions<EngineOptions> engine, ILogger<ApiContext> log)
    {
        _http = accessor.HttpContext ?? throw new InvalidOperationException("no current HTTP request");
        _host = host;
        _inFlight = inFlight;
        _log = log;
        _token = CancellationTokenSource.CreateLinkedTokenSource(_http.RequestAborted, inFlight.ShutdownToken);
        KeepAlive = TimeSpan.FromSeconds(Math.Max(0.05, api.Value.KeepAliveSeconds));
        Engine = engine.Value;
        Api = api.Value;
    }

    public EngineOptions Engine { get; }
    public ApiOptions Api { get; }
    public TimeSpan KeepAlive { get; }
    public CancellationToken RequestToken => _token.Token;
    public bool ShutdownRequested => _inFlight.ShutdownToken.IsCancellationRequested;
    /// <summary>Fires when the shutdown grace period ends (what outlives the request links to).</summary>
    public CancellationToken ShutdownToken => _inFlight.ShutdownToken;
    /// <summary>Set by the API-key check: whose request this is (null when the API is open).</summary>
    public string? Owner => _http.Items[ApiKeyAuth.OwnerItem] as string;
    public string Fingerprint => "rgemma-" + (_host.IsDemo ? "demo" : "v1");

    public ValidationLimits Limits => new(_host.ModelId, _host.Inference?.Tokenizer.VocabSize ?? 0, Engine.MaxNewTokens,
        Api.DefaultMaxTokens, Math.Min(Engine.MaxChoices, Engine.MaxRunningSequences ?? Engine.MaxChoices), Math.Max(1, Api.MaxPromptsPerRequest));

    /// <summary>The inference service, or a 503 while the model loads, failed, or the server drains.</summary>
    public InferenceService RequireReady()
    {
        if (_inFlight.Draining || _host.Status == ModelStatus.Draining) throw ApiError.Unavailable("The server is shutting down.");
        return _host.Status switch
        {
            ModelStatus.Ready => _host.Inference!,
            ModelStatus.Failed => throw ApiError.Unavailable(_host.FailureMessage ?? "The model failed to load."),
            _ => throw ApiError.Unavailable("The model is still loading; retry shortly."),
        };
    }

    /// <summary>Notes when the first generated text arrived (time to first token).</summary>
    public void MarkFirstToken()
    {
        if (_http.Items[RequestFacts.FirstTokenSeconds] is null)
            _http.Items[RequestFacts.FirstTokenSeconds] = System.Diagnostics.Stopwatch.GetElapsedTime(_started).TotalSeconds;
    }

    /// <summary>Records the outcome for the request log and metrics. Prompt and completion text
    /// are logged only when Api:LogText is on (a debugging aid); API keys never.</summary>
    public void Record(UsageReport? usage, string? finishReason, string? completionText = null)
    {
        _http.Items[RequestFacts.Model] = _host.ModelId;
        if (usage is null) return;
        _http.Items[RequestFacts.PromptTokens] = usage.PromptTokens;
        _http.Items[RequestFacts.CompletionTokens] = usage.CompletionTokens;
        _http.Items[RequestFacts.CachedTokens] = usage.CachedTokens;
        _http.Items[RequestFacts.FinishReason] = finishReason;
        if (Api.LogText)
            _log.LogInformation("Request {RequestId} text: prompt {PromptBody} completion {Completion}",
                _http.TraceIdentifier, _http.Items["rg.body"] as string, completionText);
    }

    /// <summary>Logs an unexpected failure with the request id (details stay in the log, never in the answer).</summary>
    public void LogFailure(Exception e) => _log.LogError(e, "Request {RequestId} failed", _http.TraceIdentifier);

    /// <summary>A stream already started: an error goes out as an event with OpenAI's error
    /// object and the stream ends; a shutdown ends it cleanly with [DONE].</summary>
    public async Task EndStreamAsync(ServerSentEvents sse, Exception e)
    {
        try
        {
            if (ShutdownRequested && e is OperationCanceledException)
            {
                await sse.DoneAsync(CancellationToken.None);
                return;
            }
            // Details (a model failure's message) go to the log only, as for any 500.
            var error = ApiError.From(e);
            if (error.Status == 500) _log.LogError(e, "Stream of request {RequestId} failed", _http.TraceIdentifier);
            await sse.WriteAsync(error.Envelope, OpenAiJson.Default.ErrorEnvelope, CancellationToken.None);
        }
        catch (Exception) when (_http.RequestAborted.IsCancellationRequested) { }
    }

    public void Dispose() => _token.Dispose();
}
