using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using RecurrentGemma.Server.Hosting;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>An engine that emits two tokens and then fails, as a broken model step would.</summary>
sealed class FailingEngineFactory : IEngineFactory
{
    public IEngineClient Create(GriffinForCausalLM model, EngineOptions options, EngineMetrics metrics) => new Engine();

    sealed class Engine : IEngineClient
    {
        public EngineSnapshot Snapshot => EngineSnapshot.Empty;
        public Task<int> DropSessionAsync(string sessionId, string? owner) => Task.FromResult(0);
        public IRequestHandle Submit(GenerationRequest request, CancellationToken cancellationToken = default) => new Handle();
    }

    sealed class Handle : IRequestHandle
    {
        public long Id => 1;
        public async IAsyncEnumerable<EngineEvent> ReadEventsAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            await Task.Yield();
            yield return new TokenEvent(0, 300, null);
            yield return new TokenEvent(0, 301, null);
            yield return new ErrorEvent("the model failed: CUDA out of memory (simulated)");
        }
        public void StopChoice(int index) { }
        public void Cancel() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

public class EngineFailureTests
{
    static WebApplicationFactoryWithFailingEngine Server() => new();

    sealed class WebApplicationFactoryWithFailingEngine : ServerFactory
    {
        protected override void ConfigureWebHost(Microsoft.AspNetCore.Hosting.IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.ConfigureTestServices(s => s.AddSingleton<IEngineFactory, FailingEngineFactory>());
        }
    }

    [Fact]
    public async Task A_failure_after_the_stream_started_is_sent_as_an_error_event_and_the_stream_ends()
    {
        await using var server = Server();
        var client = await server.ReadyClientAsync();
        var raw = await (await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"stream":true}"""))).Content.ReadAsStringAsync();
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("data: {\"id\":\"chatcmpl-", events[0]);
        var last = JsonDocument.Parse(events[^1]["data: ".Length..]).RootElement;
        var error = last.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.DoesNotContain("CUDA", error.GetProperty("message").GetString());   // details stay in the log
        Assert.DoesNotContain("data: [DONE]", raw);
        Assert.Contains(events, e => e.Contains("\"content\":"));   // the tokens before the failure went out
    }

    [Fact]
    public async Task A_failure_without_streaming_is_a_500_server_error_without_details_of_the_code()
    {
        await using var server = Server();
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}]}"""));
        Assert.Equal(HttpStatusCode.InternalServerError, r.StatusCode);
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.DoesNotContain(" at ", error.GetProperty("message").GetString());
    }
}
