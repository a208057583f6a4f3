using System.Diagnostics;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using RecurrentGemma.Engine;
using Serilog;
using Serilog.Formatting.Compact;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Logs (Serilog: readable console, or compact JSON with Logs:Format=json; levels from the
/// "Serilog" section), traces and metrics (OpenTelemetry: ASP.NET Core + engine spans + our
/// meters; Prometheus scrape at /metrics; OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set).
/// </summary>
public static class Telemetry
{
    public static IServiceCollection AddTelemetry(this IServiceCollection services, IConfiguration config)
    {
        services.AddSerilog((sp, log) =>
        {
            log.ReadFrom.Configuration(config).ReadFrom.Services(sp).Enrich.FromLogContext();
            if (string.Equals(config["Logs:Format"], "json", StringComparison.OrdinalIgnoreCase))
                log.WriteTo.Console(new CompactJsonFormatter());
            else
                log.WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}");
        }, preserveStaticLogger: true, writeToProviders: true);   // one logger per host, not the process-wide Log.Logger
        services.AddSingleton<ServerMetrics>();

        bool otlp = !string.IsNullOrWhiteSpace(config["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(config["OTEL_SERVICE_NAME"] ?? "recurrentgemma-server"))
            .WithTracing(t =>
            {
                t.AddAspNetCoreInstrumentation(o => o.Filter = http => !ApiKeyAuth.IsOpenPath(http.Request.Path))
                 .AddSource(EngineTracing.SourceName);
                if (otlp) t.AddOtlpExporter();
            })
            .WithMetrics(m =>
            {
                m.AddAspNetCoreInstrumentation()
                 .AddMeter(EngineMetrics.MeterName, ServerMetrics.MeterName)
                 .AddPrometheusExporter();
                if (otlp) m.AddOtlpExporter();
            });
        return services;
    }

    /// <summary>
    /// How loud a finished request is logged. A 503 is the server's own answer while the model
    /// loads or the server drains (readiness probes get it every few seconds): nothing for probes,
    /// a warning for the API. Other 5xx and exceptions are errors; probes otherwise stay quiet.
    /// </summary>
    static Serilog.Events.LogEventLevel RequestLevel(HttpContext http, Exception? e)
    {
        int status = http.Response.StatusCode;
        bool probe = ApiKeyAuth.IsOpenPath(http.Request.Path);
        if (e is not null || (status >= 500 && status != 503)) return Serilog.Events.LogEventLevel.Error;
        if (probe) return Serilog.Events.LogEventLevel.Verbose;
        return status == 503 ? Serilog.Events.LogEventLevel.Warning : Serilog.Events.LogEventLevel.Information;
    }

    public static WebApplication UseTelemetry(this WebApplication app)
    {
        app.UseSerilogRequestLogging(o =>
        {
            o.Logger = app.Services.GetService<Serilog.ILogger>();
            o.MessageTemplate = "HTTP {RequestMethod} {RequestPath} responded {StatusCode} in {Elapsed:0.0} ms";
            o.GetLevel = (http, _, e) => RequestLevel(http, e);
            o.EnrichDiagnosticContext = (diag, http) =>
            {
                diag.Set("RequestId", http.TraceIdentifier);
                if (http.GetEndpoint() is RouteEndpoint route) diag.Set("Route", route.RoutePattern.RawText);
                foreach (var (item, name) in new[]
                {
                    (RequestFacts.Model, "Model"), (RequestFacts.PromptTokens, "PromptTokens"), (RequestFacts.CompletionTokens, "CompletionTokens"),
                    (RequestFacts.CachedTokens, "CachedTokens"), (RequestFacts.FinishReason, "FinishReason"),
                })
                    if (http.Items[item] is { } v) diag.Set(name, v);
                if (http.Items[RequestFacts.FirstTokenSeconds] is double ttft) diag.Set("TimeToFirstTokenMs", Math.Round(ttft * 1000, 1));
                if (http.Items[RequestFacts.CachedTokens] is int cached) diag.Set("SessionHit", cached > 0);
            };
        });
        app.Use(async (context, next) =>
        {
            long start = Stopwatch.GetTimestamp();
            await next(context);
            var path = context.Request.Path.Value ?? "";
            if (path is not ("/v1/chat/completions" or "/v1/completions")) return;
            var items = context.Items;
            context.RequestServices.GetRequiredService<ServerMetrics>().Record(path, context.Response.StatusCode,
                Stopwatch.GetElapsedTime(start).TotalSeconds, items[RequestFacts.FirstTokenSeconds] as double?,
                items[RequestFacts.PromptTokens] as int? ?? 0, items[RequestFacts.CompletionTokens] as int? ?? 0);
        });
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }
}
