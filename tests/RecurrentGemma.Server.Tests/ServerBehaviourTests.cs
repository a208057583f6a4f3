using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Server.Hosting;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

public class ServerBehaviourTests
{
    [Fact]
    public async Task With_api_keys_only_bearer_holders_get_in_and_health_stays_open()
    {
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "secret-1").With("Auth:ApiKeys:1", "secret-2");
        var client = await server.ReadyClientAsync();
        var none = await client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("invalid_api_key", (await ReadJson(none)).GetProperty("error").GetProperty("code").GetString());
        client.DefaultRequestHeaders.Authorization = new("Bearer", "wrong");
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/v1/models")).StatusCode);
        client.DefaultRequestHeaders.Authorization = new("Bearer", "secret-2");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
        client.DefaultRequestHeaders.Authorization = null;
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }

    [Theory]
    [InlineData("Secret-1")]
    [InlineData("SECRET-1")]
    [InlineData("secret-")]
    [InlineData("secret-12")]
    [InlineData("xsecret-1")]
    [InlineData(" secret-1")]
    [InlineData("secret-1 ")]
    [InlineData("\tsecret-1")]
    public async Task A_key_that_is_almost_right_is_refused(string presented)
    {
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "secret-1");
        await server.ReadyClientAsync();
        // Sent through the test server directly: HttpClient would re-format the header value.
        async Task<int> Send(string authorization) => (await server.Server.SendAsync(c =>
        {
            c.Request.Method = "GET";
            c.Request.Path = "/v1/models";
            c.Request.Headers.Authorization = authorization;
        })).Response.StatusCode;
        Assert.Equal(401, await Send("Bearer " + presented));
        Assert.Equal(200, await Send("bearer secret-1"));   // the scheme name is case-insensitive, the key is not
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public async Task A_blank_key_from_an_unset_variable_leaves_the_api_open(string blank)
    {
        // docker-compose's Auth__ApiKeys__0: ${RG_API_KEY:-} with the variable unset.
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", blank);
        var client = await server.ReadyClientAsync();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models")).StatusCode);
        var options = server.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<AuthOptions>>().Value;
        Assert.Empty(options.ApiKeys);

        // A blank key next to a real one: the real one still guards the API.
        await using var guarded = new ServerFactory().With("Auth:ApiKeys:0", blank).With("Auth:ApiKeys:1", "real");
        var other = await guarded.ReadyClientAsync();
        Assert.Equal(HttpStatusCode.Unauthorized, (await other.GetAsync("/v1/models")).StatusCode);
        other.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "Bearer ");
        Assert.Equal(HttpStatusCode.Unauthorized, (await other.GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task Sessions_continue_through_the_api_and_belong_to_their_key()
    {
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "alice").With("Auth:ApiKeys:1", "bob");
        var alice = await server.ReadyClientAsync();
        alice.DefaultRequestHeaders.Authorization = new("Bearer", "alice");
        var turn1 = await ReadJson(await alice.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Tell me about the sea."}],"max_tokens":6,"session_id":"trip"}""")));
        Assert.Equal(0, turn1.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        var answer = turn1.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
        var second = JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "user", content = "Tell me about the sea." }, new { role = "assistant", content = answer }, new { role = "user", content = "And the mountains?" } },
            max_tokens = 4,
        });
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody(second) };
        request.Headers.Add("X-Session-Id", "trip");
        var turn2 = await ReadJson(await alice.SendAsync(request));
        int prompt1 = turn1.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        // At least the whole first prompt is reused (with the sampled answer, usually more).
        Assert.True(turn2.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() >= prompt1);

        var bob = server.CreateClient();
        bob.DefaultRequestHeaders.Authorization = new("Bearer", "bob");
        var stolen = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody(second) };
        stolen.Headers.Add("X-Session-Id", "trip");
        var bobTurn = await ReadJson(await bob.SendAsync(stolen));
        Assert.Equal(0, bobTurn.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
    }

    [Fact]
    public async Task An_ordinary_chat_without_session_id_reuses_the_first_turn()
    {
        await using var server = new ServerFactory();
        var client = await server.ReadyClientAsync();
        var turn1 = await ReadJson(await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi there"}],"max_tokens":5}""")));
        var answer = turn1.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
        var turn2 = await ReadJson(await client.PostAsync("/v1/chat/completions", JsonBody(JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "user", content = "Hi there" }, new { role = "assistant", content = answer }, new { role = "user", content = "More?" } },
            max_tokens = 3,
        }))));
        Assert.True(turn2.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32()
            >= turn1.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_stream_frees_its_slot()
    {
        await using var server = new ServerFactory().With("Engine:ParkFinishedStates", "false");
        var client = await server.ReadyClientAsync();
        using var cts = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody("""{"messages":[{"role":"user","content":"Go on forever"}],"max_tokens":4000,"stream":true,"logit_bias":{"1":-100,"107":-100}}""") };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        var stream = await response.Content.ReadAsStreamAsync(cts.Token);
        var buffer = new byte[256];
        await stream.ReadExactlyAsync(buffer.AsMemory(0, 64), cts.Token);   // the stream is flowing
        await server.Until(s => s.RunningSequences == 1);
        cts.Cancel();
        stream.Dispose();
        response.Dispose();
        await server.Until(s => s.RunningSequences == 0 && s.SlotsUsed == 0);
    }

    [Fact]
    public async Task Sixteen_concurrent_streams_all_complete()
    {
        await using var server = new ServerFactory();
        var client = await server.ReadyClientAsync();
        var tasks = Enumerable.Range(0, 16).Select(async i =>
        {
            var raw = await (await client.PostAsync("/v1/chat/completions", JsonBody(
                $$"""{"messages":[{"role":"user","content":"Stream number {{i}}"}],"max_tokens":12,"stream":true,"seed":{{i}},"logit_bias":{"1":-100,"107":-100} }"""))).Content.ReadAsStringAsync();
            return raw;
        });
        var all = await Task.WhenAll(tasks);
        Assert.All(all, raw =>
        {
            Assert.EndsWith("data: [DONE]\n\n", raw);
            Assert.Contains("\"finish_reason\":\"length\"", raw);
        });
        await server.Until(s => s.RunningSequences == 0);
    }

    [Fact]
    public async Task A_real_socket_streams_events_as_they_happen()
    {
        await using var server = new ServerFactory();
        server.StartOnSocket();
        await server.Host.Loaded;
        using var client = server.CreateClient();
        Assert.Equal("http", client.BaseAddress!.Scheme);
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":20,"stream":true}""") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var first = await reader.ReadLineAsync();
        Assert.StartsWith("data: {", first);
        Assert.Contains("\"role\":\"assistant\"", first);
        var rest = await reader.ReadToEndAsync();
        Assert.EndsWith("data: [DONE]\n\n", rest);
    }

    [Fact]
    public async Task Keep_alive_comments_flow_during_a_long_prefill()
    {
        // One prompt token per engine step: a long prompt takes a while before the first token.
        await using var server = new ServerFactory().With("Api:KeepAliveSeconds", "0.02").With("Engine:PrefillTokenBudget", "1");
        var client = await server.ReadyClientAsync();
        var longText = string.Join(' ', Enumerable.Repeat("word", 300));
        var raw = await (await client.PostAsync("/v1/chat/completions", JsonBody($$"""{"messages":[{"role":"user","content":"{{longText}}"}],"max_tokens":2,"stream":true}"""))).Content.ReadAsStringAsync();
        Assert.Contains(": keep-alive\n\n", raw);
        Assert.EndsWith("data: [DONE]\n\n", raw);

        // The Responses API's stream too (it ends with its last event, not [DONE]).
        var responses = await (await client.PostAsync("/v1/responses", JsonBody($$"""{"input":"{{longText}}","max_output_tokens":2,"stream":true}"""))).Content.ReadAsStringAsync();
        Assert.Contains(": keep-alive\n\n", responses);
        Assert.Matches("event: response\\.(completed|incomplete)\ndata: \\{[^\n]*\\}\n\n$", responses);
    }

    [Fact]
    public async Task Draining_refuses_new_requests_turns_readiness_off_and_ends_streams_cleanly()
    {
        await using var server = new ServerFactory();
        var client = await server.ReadyClientAsync();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody("""{"messages":[{"role":"user","content":"Go on"}],"max_tokens":4000,"stream":true,"logit_bias":{"1":-100,"107":-100}}""") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await server.Until(s => s.RunningSequences == 1);
        var inFlight = server.Services.GetRequiredService<InFlightRequests>();
        var drain = inFlight.DrainAsync(TimeSpan.FromMilliseconds(300), CancellationToken.None);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync("/health/ready")).StatusCode);
        var refused = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        var raw = await response.Content.ReadAsStringAsync();   // cancelled after the grace period
        Assert.EndsWith("data: [DONE]\n\n", raw);
        await drain;
        await server.Until(s => s.RunningSequences == 0);
    }

    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after()
    {
        await using var server = new ServerFactory().With("Engine:MaxRunningSequences", "1").With("Engine:MaxQueuedRequests", "1");
        var client = await server.ReadyClientAsync();
        const string longOne = """{"messages":[{"role":"user","content":"Go on"}],"max_tokens":4000,"stream":true,"logit_bias":{"1":-100,"107":-100}}""";
        using var a = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody(longOne) }, HttpCompletionOption.ResponseHeadersRead);
        await server.Until(s => s.RunningSequences == 1);
        using var b = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonBody(longOne) }, HttpCompletionOption.ResponseHeadersRead);
        await server.Until(s => s.QueuedRequests == 1);
        var c = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""));
        Assert.Equal(HttpStatusCode.TooManyRequests, c.StatusCode);
        Assert.NotNull(c.Headers.RetryAfter);
        Assert.Equal("rate_limit_error", (await ReadJson(c)).GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task A_model_directory_is_served_under_its_name()
    {
        var dir = Path.Combine(Path.GetTempPath(), "rg-api-" + Guid.NewGuid().ToString("N")[..8], "my-griffin");
        try
        {
            ModelDirectory.Write(dir, vocab: 4096);
            var logs = new CapturingLoggerProvider();
            await using var server = new ServerFactory().With("Model:Path", dir);
            var factory = server.WithWebHostBuilder(b => b.ConfigureServices(s => s.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs)));
            var client = factory.CreateClient();
            var host = factory.Services.GetRequiredService<ModelHost>();
            await host.Loaded;
            Assert.False(host.IsDemo);
            // Progress is reported through Progress<T>, whose callbacks run on the thread pool and
            // may land after loading has finished: wait for them (bounded).
            string log = "";
            for (int i = 0; i < 100 && !((log = string.Join("\n", logs.Lines)).Contains("MB/s") && log.Contains("Loaded")); i++) await Task.Delay(50);
            Assert.Contains("tensors", log);                 // progress: tensors and bytes done, MB/s
            Assert.Contains("MB/s", log);
            Assert.Matches("Loaded \"?my-griffin\"? in [0-9.]+ s", log);   // Serilog quotes string values
            var models = await ReadJson(await client.GetAsync("/v1/models"));
            Assert.Equal("my-griffin", models.GetProperty("data")[0].GetProperty("id").GetString());
            var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"model":"my-griffin","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}"""));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        finally { Directory.Delete(Path.GetDirectoryName(dir)!, recursive: true); }
    }

    [Fact]
    public async Task A_model_that_fails_to_load_keeps_the_server_up_and_not_ready()
    {
        await using var server = new ServerFactory().With("Model:Path", "/no/such/secret-dir/model");
        var client = await server.ReadyClientAsync();
        Assert.Equal(ModelStatus.Failed, server.Host.Status);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
        var ready = await client.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode);
        var message = (await ReadJson(r)).GetProperty("error").GetProperty("message").GetString()!;
        // Both say what happened and give the reference id of the log entry; neither leaks the
        // exception text or the path.
        var reference = server.Host.FailureReference!;
        Assert.Matches("^load-[0-9a-f]{12}$", reference);
        foreach (var text in new[] { message, await ready.Content.ReadAsStringAsync() })
        {
            Assert.Contains("failed to load", text);
            Assert.Contains(reference, text);
            Assert.DoesNotContain("secret-dir", text);
            Assert.DoesNotContain("/no/such", text);
            Assert.DoesNotContain("Exception", text);
        }
    }
}

public class CorsTests
{
    [Fact]
    public async Task Cors_is_off_by_default_and_answers_configured_origins()
    {
        static HttpRequestMessage Preflight() => new(HttpMethod.Options, "/v1/chat/completions")
        {
            Headers = { { "Origin", "https://app.example" }, { "Access-Control-Request-Method", "POST" }, { "Access-Control-Request-Headers", "content-type,authorization" } },
        };
        await using (var closed = new ServerFactory())
        {
            var r = await (await closed.ReadyClientAsync()).SendAsync(Preflight());
            Assert.False(r.Headers.Contains("Access-Control-Allow-Origin"));
        }
        await using var open = new ServerFactory().With("Cors:Origins:0", "https://app.example");
        var ok = await (await open.ReadyClientAsync()).SendAsync(Preflight());
        Assert.Equal("https://app.example", ok.Headers.GetValues("Access-Control-Allow-Origin").Single());
    }
}
