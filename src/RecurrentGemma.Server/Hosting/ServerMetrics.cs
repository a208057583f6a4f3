using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Request-level instruments on the "RecurrentGemma.Server" meter (Prometheus names in README):
/// requests by route and status, end-to-end latency, time to first token, time per output
/// token, and prompt tokens (including those served from a parked state).
/// </summary>
public sealed class ServerMetrics : IDisposable
{
    public const string MeterName = "RecurrentGemma.Server";

    static readonly double[] LatencyBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160];
    static readonly double[] TokenBuckets = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56];

    readonly Meter _meter;
    readonly Counter<long> _requests, _promptTokens;
    readonly Histogram<double> _duration, _ttft, _tpot;

    public ServerMetrics(System.Diagnostics.Metrics.IMeterFactory factory)
    {
        _meter = factory.Create(MeterName);
        _requests = _meter.CreateCounter<long>("rgemma.requests", "{request}", "Completion requests by route and HTTP status");
        _promptTokens = _meter.CreateCounter<long>("rgemma.prompt_tokens", "{token}", "Prompt tokens of finished requests (cached included)");
        _duration = _meter.CreateHistogram("rgemma.request.duration", "s", "End-to-end request latency (a stream: until its last event)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _ttft = _meter.CreateHistogram("rgemma.request.time_to_first_token", "s", "Time from request to the first generated token",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        _tpot = _meter.CreateHistogram("rgemma.request.time_per_output_token", "s", "Mean time between output tokens after the first",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = TokenBuckets });
    }

    public void Record(string route, int status, double seconds, double? ttft, int promptTokens, int completionTokens)
    {
        var tags = new TagList { { "route", route }, { "status", status } };
        _requests.Add(1, tags);
        _duration.Record(seconds, new TagList { { "route", route } });
        if (promptTokens > 0) _promptTokens.Add(promptTokens);
        if (ttft is { } first)
        {
            _ttft.Record(first, new TagList { { "route", route } });
            if (completionTokens > 1) _tpot.Record((seconds - first) / (completionTokens - 1), new TagList { { "route", route } });
        }
    }

    public void Dispose() => _meter.Dispose();
}

/// <summary>Names of the per-request facts an endpoint leaves in HttpContext.Items for logs and metrics.</summary>
public static class RequestFacts
{
    public const string PromptTokens = "rg.prompt_tokens";
    public const string CompletionTokens = "rg.completion_tokens";
    public const string CachedTokens = "rg.cached_tokens";
    public const string FinishReason = "rg.finish_reason";
    public const string FirstTokenSeconds = "rg.ttft";
    public const string Model = "rg.model";
    public const string Session = "rg.session";
}
