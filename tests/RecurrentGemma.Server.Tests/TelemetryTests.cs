using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>Captures every log event Serilog forwards (it writes to the other providers too).</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<string> Lines { get; } = new();
    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
    public void Dispose() { }

    sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var props = state is IEnumerable<KeyValuePair<string, object?>> kv ? string.Join(" ", kv.Select(p => $"{p.Key}={p.Value}")) : "";
            owner.Lines.Enqueue($"{category} {formatter(state, exception)} {props} {exception}");
        }
    }
}

public class TelemetryTests
{
    static readonly string[] DocumentedMetrics =
    [
        "rgemma_requests_total", "rgemma_request_duration_seconds", "rgemma_request_time_to_first_token_seconds",
        "rgemma_request_time_per_output_token_seconds", "rgemma_prompt_tokens_total",
        "rgemma_engine_prefill_tokens_total", "rgemma_engine_generation_tokens_total", "rgemma_engine_cached_tokens_total",
        "rgemma_engine_requests_waiting", "rgemma_engine_sequences_running", "rgemma_engine_state_slots_used",
        "rgemma_engine_state_slots_total", "rgemma_engine_state_slots_usage_ratio", "rgemma_engine_parked_sessions",
        "rgemma_engine_evictions_total", "rgemma_engine_session_hits_total", "rgemma_engine_step_duration_seconds",
        "rgemma_engine_decode_batch_size", "http_server_request_duration_seconds", "rgemma_responses_background_running",
    ];

    [Fact]
    public async Task Metrics_expose_every_documented_name_after_a_request()
    {
        await using var server = new ServerFactory();
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"logit_bias":{"1":-100,"107":-100}}"""));
        r.EnsureSuccessStatusCode();
        // A background response that ended: its counter has a series from then on (the alerts read it).
        var background = await ReadJson(await client.PostAsync("/v1/responses", JsonBody("""{"input":"Hi","background":true,"max_output_tokens":2}""")));
        await BackgroundResponsesTests.UntilDone(client, background.GetProperty("id").GetString()!);
        var metrics = await client.GetStringAsync("/metrics");
        foreach (var name in DocumentedMetrics) Assert.Contains(name, metrics);
        Assert.Matches("rgemma_requests_total\\{[^}]*route=\"/v1/chat/completions\"[^}]*status=\"200\"[^}]*\\} [1-9]", metrics);   // other hosts in this test process may add to it
        // The README documents the same names.
        var readme = File.ReadAllText(Path.Combine(ServerFactory.RepoRoot, "README.md"));
        foreach (var name in DocumentedMetrics) Assert.Contains(name, readme);

        // Every metric the alert rules and the dashboard read is one the server exports (but the
        // restore histogram, recorded only once a parked state comes back from a tier: the
        // engine's RestorePhaseTests read it). The state gauge's values are read from a process of
        // its own (below): other hosts of this test process, perhaps still loading, report the same
        // series, and the exporter shows one of them.
        Assert.Matches("rgemma_server_state\\{[^}]*state=\"ready\"[^}]*\\} [01]", metrics);
        Assert.Matches("rgemma_server_info\\{[^}]*device=\"cpu\"[^}]*dtype=\"f32\"[^}]*model=\"recurrentgemma-demo\"[^}]*version=\"[^\"]+\"[^}]*\\} 1", metrics);
        foreach (var file in new[] { "deploy/prometheus/alerts.yml", "deploy/grafana/recurrentgemma-dashboard.json" })
            foreach (var used in System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(Path.Combine(ServerFactory.RepoRoot, file)), "rgemma_[a-z_]+").Select(m => m.Value).Distinct()
                .Where(m => !m.StartsWith("rgemma_engine_state_restore_duration", StringComparison.Ordinal)))
                Assert.True(metrics.Contains(System.Text.RegularExpressions.Regex.Replace(used, "_(bucket|sum|count)$", "")), $"{file} uses {used}, which /metrics does not have");
    }

    [Fact]
    public async Task A_ready_server_shows_as_the_ready_state_for_alerts()
    {
        await using var server = await ServerProcess.StartAsync("--Model:KernelChoices=off");
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Matches("rgemma_server_state\\{[^}]*state=\"ready\"[^}]*\\} 1", metrics);
        Assert.Matches("rgemma_server_state\\{[^}]*state=\"loading\"[^}]*\\} 0", metrics);
        Assert.Matches("rgemma_server_state\\{[^}]*state=\"failed\"[^}]*\\} 0", metrics);
    }

    [Fact]
    public async Task A_model_that_failed_to_load_shows_as_the_failed_state_for_alerts()
    {
        await using var server = await ServerProcess.StartFailedAsync("--Model:Path=/nonexistent/model");
        var metrics = await server.Http.GetStringAsync("/metrics");
        Assert.Matches("rgemma_server_state\\{[^}]*state=\"failed\"[^}]*\\} 1", metrics);
        Assert.Matches("rgemma_server_state\\{[^}]*state=\"ready\"[^}]*\\} 0", metrics);
    }

    [Fact]
    public async Task Logs_hold_the_request_facts_but_never_the_prompt_text_or_the_api_key()
    {
        var logs = new CapturingLoggerProvider();
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "sk-very-secret-key");
        var factory = server.WithWebHostBuilder(b => b.ConfigureServices(s => s.AddSingleton<ILoggerProvider>(logs)));
        var client = factory.CreateClient();
        await factory.Services.GetRequiredService<RecurrentGemma.Server.Hosting.ModelHost>().Loaded;
        client.DefaultRequestHeaders.Authorization = new("Bearer", "sk-very-secret-key");
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"my bank password is hunter2"}],"max_tokens":3,"logit_bias":{"1":-100,"107":-100}}"""));
        r.EnsureSuccessStatusCode();
        var all = await WaitForLog(logs, "CompletionTokens=");
        Assert.Contains("/v1/chat/completions", all);
        Assert.Contains("PromptTokens=", all);
        Assert.Contains("CompletionTokens=3", all);
        Assert.Contains("TimeToFirstTokenMs=", all);
        Assert.DoesNotContain("hunter2", all);
        Assert.DoesNotContain("sk-very-secret-key", all);
    }

    [Fact]
    public async Task With_the_debug_option_the_text_is_logged()
    {
        var logs = new CapturingLoggerProvider();
        await using var server = new ServerFactory().With("Api:LogText", "true");
        var factory = server.WithWebHostBuilder(b => b.ConfigureServices(s => s.AddSingleton<ILoggerProvider>(logs)));
        var client = factory.CreateClient();
        await factory.Services.GetRequiredService<RecurrentGemma.Server.Hosting.ModelHost>().Loaded;
        (await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"remember hunter2"}],"max_tokens":2}"""))).EnsureSuccessStatusCode();
        Assert.Contains("hunter2", await WaitForLog(logs, "hunter2"));
    }

    /// <summary>All captured log text once it contains <paramref name="marker"/> (bounded wait).</summary>
    static async Task<string> WaitForLog(CapturingLoggerProvider logs, string marker)
    {
        for (int i = 0; i < 100 && !string.Join("\n", logs.Lines).Contains(marker); i++) await Task.Delay(50);
        return string.Join("\n", logs.Lines);
    }

}
