using System.Diagnostics;

namespace RecurrentGemma.Engine;

/// <summary>
/// Spans of a request's life in the engine (OpenTelemetry picks up the source by name):
/// engine.queued (submit → admission), engine.prefill (admission → first token, with prompt and
/// cached token counts), engine.decode (first token → finish, with generated tokens). They are
/// emitted when the request completes, with their real start and end times, as children of the
/// caller's span (the HTTP request).
/// </summary>
public static class EngineTracing
{
    public const string SourceName = "RecurrentGemma.Engine";
    public static readonly ActivitySource Source = new(SourceName);

    internal static void Emit(ActiveRequest r, string outcome)
    {
        if (!Source.HasListeners()) return;
        var now = DateTimeOffset.UtcNow;
        var admitted = r.AdmittedAt ?? now;
        var first = r.FirstTokenAt ?? now;
        Span("engine.queued", r.SubmittedAt, admitted, r, a => a.SetTag("rgemma.queue.outcome", r.AdmittedAt is null ? outcome : "admitted"));
        if (r.AdmittedAt is null) return;
        Span("engine.prefill", admitted, first, r, a =>
        {
            a.SetTag("rgemma.prompt_tokens", r.Request.PromptTokens.Count);
            a.SetTag("rgemma.cached_tokens", r.CachedTokens);
            a.SetTag("rgemma.prefilled_tokens", r.Request.PromptTokens.Count - r.CachedTokens);
        });
        if (r.FirstTokenAt is null) return;
        Span("engine.decode", first, now, r, a =>
        {
            a.SetTag("rgemma.completion_tokens", r.Choices.Sum(c => c.Generated.Count));
            a.SetTag("rgemma.choices", r.Choices.Length);
            a.SetTag("rgemma.outcome", outcome);
        });
    }

    static void Span(string name, DateTimeOffset start, DateTimeOffset end, ActiveRequest r, Action<Activity> tag)
    {
        using var activity = Source.StartActivity(name, ActivityKind.Internal, r.TraceParent, startTime: start);
        if (activity is null) return;
        activity.SetTag("rgemma.request_id", r.Id);
        if (r.Request.SessionId is not null) activity.SetTag("rgemma.session", true);
        tag(activity);
        activity.SetEndTime(end.UtcDateTime);
    }
}
