using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using RecurrentGemma.Engine;
using RecurrentGemma.Server.OpenAi;
using RecurrentGemma.Server.Ui;

namespace RecurrentGemma.Server.Hosting;

/// <summary>Service registration and the request pipeline, so Program.cs reads as a table of contents.</summary>
public static class ServiceRegistration
{
    public const string PerKeyPolicy = "per-key";

    public static IServiceCollection AddRecurrentGemma(this IServiceCollection services, IConfiguration config)
    {
        services.Configure<ModelOptions>(config.GetSection("Model"));
        services.Configure<EngineOptions>(config.GetSection("Engine"));
        // Sessions:MaxParkedPerOwner is an engine setting grouped with the session options.
        services.Configure<EngineOptions>(config.GetSection("Sessions"));
        services.Configure<SessionsOptions>(config.GetSection("Sessions"));
        services.Configure<ApiOptions>(config.GetSection("Api"));
        services.Configure<Responses.ResponsesOptions>(config.GetSection("Responses"));
        services.Configure<Ui.UiOptions>(config.GetSection("Ui"));
        services.AddSingleton<Responses.ResponseStore>();
        services.AddSingleton<Responses.BackgroundResponses>();
        services.Configure<AuthOptions>(config.GetSection("Auth"));
        services.PostConfigure<AuthOptions>(o => ApiKeyAuth.DropBlankKeys(o));
        services.Configure<CorsOptions>(config.GetSection("Cors"));
        services.AddHttpContextAccessor();
        services.AddForwardedClients(config);
        services.AddTelemetry(config);
        services.AddSingleton<InFlightRequests>();
        services.AddSingleton(sp => new EngineMetrics(sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.AddSingleton<IEngineFactory, EngineFactory>();
        services.AddSingleton<ModelHost>();
        services.AddHostedService(sp => sp.GetRequiredService<ModelHost>());
        services.AddScoped<ApiContext>();
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, OpenAiJson.Default);
            o.SerializerOptions.TypeInfoResolverChain.Insert(1, Responses.ResponsesJson.Default);
        });

        services.AddHealthChecks().AddCheck<ModelReadyCheck>("model", tags: ["ready"]);
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(o => o.SwaggerDoc("v1", new() { Title = "RecurrentGemma.Server — OpenAI-compatible API", Version = "v1" }));

        services.AddRateLimiter(o =>
        {
            o.AddPolicy(PerKeyPolicy, context =>
            {
                var limit = context.RequestServices.GetRequiredService<IOptions<ApiOptions>>().Value.MaxConcurrentRequestsPerKey;
                var key = context.Items[ApiKeyAuth.OwnerItem] as string ?? context.Connection.RemoteIpAddress?.ToString() ?? "anonymous";
                return RateLimitPartition.GetConcurrencyLimiter(key, _ => new ConcurrencyLimiterOptions { PermitLimit = limit, QueueLimit = 0 });
            });
            o.OnRejected = (ctx, _) => new ValueTask(ApiErrorWriter.WriteAsync(ctx.HttpContext,
                ApiError.Overloaded("Too many concurrent requests for this API key; retry shortly.")));
        });

        var origins = config.GetSection("Cors:Origins").Get<string[]>() ?? [];
        if (origins.Length > 0)
            services.AddCors(o => o.AddDefaultPolicy(p => p.WithOrigins(origins).AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("Retry-After")));
        services.Configure<HostOptions>(o =>
        {
            var grace = config.GetValue("Api:ShutdownGraceSeconds", 30.0);
            o.ShutdownTimeout = TimeSpan.FromSeconds(grace + 10);
        });
        return services;
    }

    public static WebApplication UseRecurrentGemma(this WebApplication app)
    {
        app.UseForwardedClients(app.Configuration);   // first: the log and the limits see the real client
        app.UseTelemetry();
        app.UseOpenAiErrors();
        if (app.Services.GetRequiredService<IOptions<CorsOptions>>().Value.Origins.Count > 0) app.UseCors();
        app.UseSwagger();
        app.UseSwaggerUI();
        app.UsePlayground();   // public files only; before the key check, which lets them through anyway
        app.UseApiKeys();
        app.UseInFlightTracking();
        app.UseRateLimiter();

        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        var readiness = new HealthCheckOptions
        {
            Predicate = c => c.Tags.Contains("ready"),
            // Loading and draining report Degraded (expected states, not errors); both are "not ready".
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status503ServiceUnavailable,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
            // "Unhealthy: The model failed to load (reference load-…)" — the check's description,
            // which never carries exception text or paths (those are in the log under the reference).
            ResponseWriter = (context, report) =>
            {
                context.Response.ContentType = "text/plain; charset=utf-8";
                var detail = string.Join("; ", report.Entries.Values.Select(e => e.Description).Where(d => !string.IsNullOrEmpty(d)));
                var status = report.Status == HealthStatus.Degraded ? "NotReady" : report.Status.ToString();
                return context.Response.WriteAsync(detail.Length == 0 ? status : $"{status}: {detail}");
            },
        };
        app.MapHealthChecks("/health/ready", readiness);
        // What vLLM-fronting routers and hosts probe: vLLM's /health (200 once it serves) and the
        // SageMaker-style /ping, both readiness here; and vLLM's /version.
        app.MapHealthChecks("/health", readiness);
        app.MapHealthChecks("/ping", readiness);
        app.MapGet("/version", () => TypedResults.Json(new VersionDto(Version), OpenAiJson.Default.VersionDto)).ExcludeFromDescription();
        app.MapOpenAiApi();
        // Made now, not at the first background response: its gauge is on /metrics from the start.
        app.Services.GetRequiredService<Responses.BackgroundResponses>();

        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        lifetime.ApplicationStopping.Register(() => app.Services.GetRequiredService<InFlightRequests>().BeginDrain());
        return app;
    }

    /// <summary>The server's version (the assembly's informational version, its commit after a '+' when built from git).</summary>
    public static string Version { get; } =
        typeof(ServiceRegistration).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion ?? "unknown";

    /// <summary>Counts API requests in flight and refuses new ones (503) while the server drains.</summary>
    static IApplicationBuilder UseInFlightTracking(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        if (ApiKeyAuth.IsOpenPath(context.Request.Path)) { await next(context); return; }
        var inFlight = context.RequestServices.GetRequiredService<InFlightRequests>();
        if (inFlight.Draining) { await ApiErrorWriter.WriteAsync(context, ApiError.Unavailable("The server is shutting down.")); return; }
        using (inFlight.Enter()) await next(context);
    });

    /// <summary>
    /// Ready once the model is loaded and until the drain. Loading and draining are expected
    /// states, reported Degraded (503, logged below warning level: orchestrators probe every few
    /// seconds, and each probe of a multi-minute load logged two errors); a model that failed to
    /// load is Unhealthy, an error.
    /// </summary>
    sealed class ModelReadyCheck(ModelHost host, InFlightRequests inFlight) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(host.Status == ModelStatus.Ready && !inFlight.Draining ? HealthCheckResult.Healthy($"{host.ModelId} is loaded")
                : host.Status == ModelStatus.Failed ? HealthCheckResult.Unhealthy(host.FailureMessage ?? "the model failed to load")
                : HealthCheckResult.Degraded(inFlight.Draining ? "draining" : $"model {host.Status.ToString().ToLowerInvariant()}"));
    }
}
