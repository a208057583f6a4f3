using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Server.Hosting;
using static RecurrentGemma.Server.Tests.ResponsesApiTests;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// background: true — a response that runs with no request waiting: queued, polled, the same
/// answer as in the foreground, cancelled (here and from another replica over a real Redis),
/// streamed and resumed from a sequence number, on after its client left, in a conversation,
/// deleted while running, and failed by a shutdown.
/// </summary>
public class BackgroundResponsesTests(DemoServer server) : IClassFixture<DemoServer>
{
    // Long enough to be caught running: the grammar wants three strings of 1000 characters or more,
    // so no end of turn can come early.
    const string LongFormat = """ "text": {"format": {"type": "json_schema", "name": "long", "strict": true, "schema": {"type": "object", "properties": {"s": {"type": "array", "minItems": 3, "items": {"type": "string", "minLength": 1000}}}, "required": ["s"], "additionalProperties": false}}}""";
    const string Long = """{"input": "Go on", "background": true, "max_output_tokens": 4000, "temperature": 0, """ + LongFormat + "}";

    static string Id(JsonElement r) => r.GetProperty("id").GetString()!;
    static string Status(JsonElement r) => r.GetProperty("status").GetString()!;

    static async Task<JsonElement> Get(HttpClient client, string id) => await ReadJson(await client.GetAsync($"/v1/responses/{id}"));

    /// <summary>Polls until the response leaves queued and in_progress (bounded).</summary>
    public static async Task<JsonElement> UntilDone(HttpClient client, string id)
    {
        for (int i = 0; i < 600; i++)
        {
            var r = await Get(client, id);
            if (Status(r) is not ("queued" or "in_progress")) return r;
            await Task.Delay(50);
        }
        throw new TimeoutException($"{id} did not finish");
    }

    static async Task<JsonElement> Post(HttpClient client, string path, string body, HttpStatusCode expect = HttpStatusCode.OK)
    {
        var r = await client.PostAsync(path, JsonBody(body));
        var json = await ReadJson(r);
        Assert.True(r.StatusCode == expect, $"{r.StatusCode}: {json}");
        return json;
    }

    [Fact]
    public async Task A_background_response_is_queued_then_polled_to_the_same_answer_as_in_the_foreground()
    {
        var client = await server.ReadyClientAsync();
        const string body = """{"input": "Name a river.", "max_output_tokens": 12, "temperature": 0.8, "seed": 11}""";
        var foreground = await Create(client, JsonDocument.Parse(body).RootElement);
        var queued = await Post(client, "/v1/responses", body.Replace("{", """{"background": true, """));
        Assert.Equal("queued", Status(queued));
        Assert.True(queued.GetProperty("background").GetBoolean());
        Assert.Equal(0, queued.GetProperty("output").GetArrayLength());
        var done = await UntilDone(client, Id(queued));
        Assert.Equal(Status(foreground), Status(done));
        Assert.Equal(foreground.GetProperty("output_text").GetString(), done.GetProperty("output_text").GetString());
        Assert.Equal(foreground.GetProperty("usage").GetProperty("output_tokens").GetInt32(), done.GetProperty("usage").GetProperty("output_tokens").GetInt32());
        // Finished: cancelling it is refused, and it can be continued like any stored response.
        var refused = await Post(client, $"/v1/responses/{Id(done)}/cancel", "{}", HttpStatusCode.BadRequest);
        Assert.Contains("already finished", refused.GetProperty("error").GetProperty("message").GetString());
        var next = await Create(client, new { input = "And a lake?", previous_response_id = Id(done), max_output_tokens = 3, temperature = 0 });
        Assert.True(next.GetProperty("usage").GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32() > 0);
        // The request metrics do not see a background generation; these do.
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Matches("rgemma_responses_background_total\\{[^}]*status=\"incomplete\"[^}]*\\} [1-9]", metrics);
        Assert.Contains("rgemma_responses_background_running", metrics);
    }

    [Fact]
    public async Task Cancelling_stops_the_generation_keeps_its_output_so_far_and_frees_its_sequence()
    {
        var client = await server.ReadyClientAsync();
        var queued = await Post(client, "/v1/responses", Long);
        await server.Until(s => s.RunningSequences >= 1);
        await Task.Delay(100);
        var cancelled = await Post(client, $"/v1/responses/{Id(queued)}/cancel", "{}");
        Assert.Equal("cancelled", Status(cancelled));
        await server.Until(s => s.RunningSequences == 0);
        var stored = await Get(client, Id(queued));
        Assert.Equal("cancelled", Status(stored));
        var text = stored.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!;
        Assert.InRange(text.Length, 1, 3999);   // some of it, not all of it
        // Cancelling again returns it as it is; a foreground response cannot be cancelled.
        Assert.Equal("cancelled", Status(await Post(client, $"/v1/responses/{Id(queued)}/cancel", "{}")));
        var foreground = await Create(client, new { input = "Hi", max_output_tokens = 2 });
        await Post(client, $"/v1/responses/{Id(foreground)}/cancel", "{}", HttpStatusCode.BadRequest);
        await Post(client, "/v1/responses/resp_unknown/cancel", "{}", HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task A_streamed_background_response_goes_on_without_its_client_and_is_resumed_from_a_sequence_number()
    {
        var client = await server.ReadyClientAsync();
        string id = await StartAndLeave(client, """{"input": "Go on", "background": true, "stream": true, "max_output_tokens": 300, "temperature": 0}""");
        var done = await UntilDone(client, id);
        Assert.Equal("incomplete", Status(done));
        Assert.Equal(300, done.GetProperty("usage").GetProperty("output_tokens").GetInt32());

        // Every event again, and the ones after number 5: the same events from there on.
        var all = Events(await client.GetStringAsync($"/v1/responses/{id}?stream=true"));
        var after5 = Events(await client.GetStringAsync($"/v1/responses/{id}?stream=true&starting_after=5"));
        Assert.Equal(Enumerable.Range(0, all.Count), all.Select(e => e.GetProperty("sequence_number").GetInt32()));
        Assert.Equal("response.incomplete", all[^1].GetProperty("type").GetString());
        Assert.Equal(all.Skip(6).Select(e => e.ToString()), after5.Select(e => e.ToString()));
        var deltas = string.Concat(all.Where(e => e.GetProperty("type").GetString() == "response.output_text.delta").Select(e => e.GetProperty("delta").GetString()));
        Assert.Equal(done.GetProperty("output_text").GetString(), deltas);
    }

    /// <summary>Starts a streamed background response and leaves after its first event; its id.</summary>
    static async Task<string> StartAndLeave(HttpClient client, string body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/responses") { Content = JsonBody(body) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        string? line;
        while ((line = await reader.ReadLineAsync()) is not null && !line.StartsWith("data: ")) { }
        return JsonDocument.Parse(line![6..]).RootElement.GetProperty("response").GetProperty("id").GetString()!;
    }

    static List<JsonElement> Events(string sse) =>
        Regex.Matches(sse, "^data: (.*)$", RegexOptions.Multiline).Select(m => JsonDocument.Parse(m.Groups[1].Value).RootElement).ToList();

    [Fact]
    public async Task In_a_conversation_the_answer_is_added_when_done_and_a_cancelled_one_adds_nothing()
    {
        var client = await server.ReadyClientAsync();
        string cid = Id(await Post(client, "/v1/conversations", "{}"));
        var done = await UntilDone(client, Id(await Post(client, "/v1/responses", $$"""{"input": "Hi", "conversation": "{{cid}}", "background": true, "max_output_tokens": 4, "temperature": 0}""")));
        var items = await ReadJson(await client.GetAsync($"/v1/conversations/{cid}/items"));
        Assert.Equal(2, items.GetProperty("data").GetArrayLength());
        Assert.Equal(done.GetProperty("output_text").GetString(), items.GetProperty("data")[0].GetProperty("content")[0].GetProperty("text").GetString());

        var running = await Post(client, "/v1/responses", $$"""{"input": "Go on", "conversation": "{{cid}}", "background": true, "max_output_tokens": 4000, "temperature": 0, """ + LongFormat + "}");
        // The running response holds the conversation (the demo model makes 4000 tokens in about a
        // second, so this looks at once rather than through a request that would wait for the lock).
        var store = server.Services.GetRequiredService<Responses.ResponseStore>();
        Assert.Null(store.TryLock(null, cid, TimeSpan.FromSeconds(1)));
        await Post(client, $"/v1/responses/{Id(running)}/cancel", "{}");
        await server.Until(s => s.RunningSequences == 0);
        Assert.Equal(2, (await ReadJson(await client.GetAsync($"/v1/conversations/{cid}/items"))).GetProperty("data").GetArrayLength());
        await Post(client, $"/v1/conversations/{cid}/items", """{"items": [{"role": "user", "content": "x"}]}""");   // let go
    }

    [Fact]
    public async Task Deleting_a_running_background_response_stops_it_and_it_stays_deleted()
    {
        var client = await server.ReadyClientAsync();
        var queued = await Post(client, "/v1/responses", Long);
        await server.Until(s => s.RunningSequences >= 1);
        Assert.Equal(HttpStatusCode.OK, (await client.DeleteAsync($"/v1/responses/{Id(queued)}")).StatusCode);
        await server.Until(s => s.RunningSequences == 0);
        await Task.Delay(200);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/responses/{Id(queued)}")).StatusCode);
    }

    [Fact]
    public async Task A_background_response_whose_server_died_reads_as_failed_after_a_minute_without_a_sign_of_life()
    {
        var client = await server.ReadyClientAsync();
        var store = server.Services.GetRequiredService<Responses.ResponseStore>();
        // Records as a server that was killed mid-answer left them: running, last alive 2 minutes
        // ago, and one alive 10 seconds ago (another replica, still working on it).
        Responses.StoredResponse Left(string id, int secondsAgo) => new()
        {
            Response = new Responses.ResponseObject
            {
                Id = id, CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 300, Status = "in_progress", Model = "recurrentgemma-demo", Background = true,
            },
            Context = [], AliveAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - secondsAgo,
        };
        string dead = "resp_dead" + Guid.NewGuid().ToString("N"), alive = "resp_alive" + Guid.NewGuid().ToString("N");
        store.Put(null, Left(dead, 120));
        store.Put(null, Left(alive, 10));

        var failed = await Get(client, dead);
        Assert.Equal("failed", Status(failed));
        Assert.Contains("stopped before it finished", failed.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal("failed", store.Get(null, dead)!.Response.Status);   // written back: every replica reads it so
        await Post(client, $"/v1/responses/{dead}/cancel", "{}", HttpStatusCode.BadRequest);
        Assert.Equal("in_progress", Status(await Get(client, alive)));
    }

    [Fact]
    public async Task Bad_requests_name_their_field()
    {
        var client = await server.ReadyClientAsync();
        await AssertRefusedAsync(client, "/v1/responses", """{"input": "x", "background": true, "store": false}""", "background");
        var foreground = await Create(client, new { input = "Hi", max_output_tokens = 2 });
        foreach (var (query, param) in new[] { ("stream=maybe", "stream"), ("stream=true&starting_after=x", "starting_after"), ("starting_after=2", "starting_after"), ("stream=true", "stream") })
        {
            var r = await client.GetAsync($"/v1/responses/{Id(foreground)}?{query}");
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal(param, (await ReadJson(r)).GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task A_shutdown_ends_a_running_background_response_as_failed()
    {
        await using var own = new ServerFactory();
        var client = await own.ReadyClientAsync();
        var queued = await Post(client, "/v1/responses", Long);
        await own.Until(s => s.RunningSequences >= 1);
        await own.Services.GetRequiredService<InFlightRequests>().DrainAsync(TimeSpan.FromMilliseconds(200), CancellationToken.None);
        var record = own.Services.GetRequiredService<Responses.ResponseStore>().Get(null, Id(queued))!;
        Assert.Equal("failed", record.Response.Status);
        Assert.Contains("shut down", record.Response.Error!.Message);
        await own.Until(s => s.RunningSequences == 0);
    }

    [Fact]
    public async Task A_cancel_sent_to_another_replica_stops_the_response_through_redis()
    {
        using var redis = new RedisServer();
        await using var a = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        await using var b = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        var clientA = await a.ReadyClientAsync();
        var clientB = await b.ReadyClientAsync();
        var queued = await Post(clientA, "/v1/responses", Long);
        await a.Until(s => s.RunningSequences >= 1);
        Assert.Equal("in_progress", Status(await Get(clientB, Id(queued))));
        var cancelled = await Post(clientB, $"/v1/responses/{Id(queued)}/cancel", "{}");
        Assert.Equal("cancelled", Status(cancelled));
        await a.Until(s => s.RunningSequences == 0);   // replica A saw it in the record and stopped
        await Task.Delay(200);
        var final = await Get(clientA, Id(queued));
        Assert.Equal("cancelled", Status(final));
        Assert.True(final.GetProperty("output").GetArrayLength() > 0, "replica A's partial output was kept");
    }

    [Fact]
    public async Task A_stream_is_resumed_on_another_replica_through_redis_and_ends_with_the_response()
    {
        using var redis = new RedisServer();
        var key = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));   // records and events sealed
        await using var a = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString).With("Sessions:EncryptionKey", key);
        await using var c = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString).With("Sessions:EncryptionKey", key);
        var clientA = await a.ReadyClientAsync();
        var clientC = await c.ReadyClientAsync();

        // A streamed background response on A; its client leaves after the first event.
        string id = await StartAndLeave(clientA, Long.Replace("\"background\": true", "\"background\": true, \"stream\": true"));

        // C, which never ran it, follows it from number 5 while it runs, to its end.
        Assert.Equal("in_progress", Status(await Get(clientC, id)));
        var fromC = Events(await clientC.GetStringAsync($"/v1/responses/{id}?stream=true&starting_after=5"));
        var done = await UntilDone(clientA, id);
        var onA = Events(await clientA.GetStringAsync($"/v1/responses/{id}?stream=true"));   // A's own log
        Assert.True(onA.Count > 100, $"{onA.Count} events");
        Assert.Equal(onA.Skip(6).Select(e => e.ToString()), fromC.Select(e => e.ToString()));
        Assert.Equal("response." + Status(done), fromC[^1].GetProperty("type").GetString());
        // Sealed in Redis: no event's text in the clear.
        using (var direct = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            var list = direct.GetServer(direct.GetEndPoints()[0]).Keys(pattern: "rg:list:*").Single();
            var raw = (byte[])(await direct.GetDatabase().ListGetByIndexAsync(list, 0))!;
            Assert.DoesNotContain("response.created", System.Text.Encoding.UTF8.GetString(raw));
        }
        // After the end, from the start: every event again.
        Assert.Equal(onA.Select(e => e.ToString()), Events(await clientC.GetStringAsync($"/v1/responses/{id}?stream=true")).Select(e => e.ToString()));

        // Deleted: its events go with it.
        Assert.Equal(HttpStatusCode.OK, (await clientC.DeleteAsync($"/v1/responses/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await clientC.GetAsync($"/v1/responses/{id}?stream=true")).StatusCode);
        Assert.Empty(await c.Services.GetRequiredService<Responses.ResponseStore>().ReadListAsync(null, id, 0));
    }

    [Fact]
    public async Task A_resumed_stream_whose_server_died_ends_once_its_record_reads_as_failed()
    {
        using var redis = new RedisServer();
        await using var b = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        var client = await b.ReadyClientAsync();
        var store = b.Services.GetRequiredService<Responses.ResponseStore>();
        // As a replica killed mid-answer leaves it: running, last alive 56 s ago, two events and no end mark.
        string id = "resp_dead" + Guid.NewGuid().ToString("N");
        store.Put(null, new Responses.StoredResponse
        {
            Response = new Responses.ResponseObject { Id = id, CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, Status = "in_progress", Model = "recurrentgemma-demo", Background = true },
            Context = [], AliveAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 56,
        });
        var events = new[] { "response.created", "response.in_progress" }.Select((type, i) =>
            System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new Responses.ResponseStreamEvent { Type = type, SequenceNumber = i }, Responses.ResponsesJson.Default.ResponseStreamEvent)).ToList();
        await store.AppendListAsync(null, id, events, TimeSpan.FromMinutes(1));

        // The stream gives what there is, waits, and ends once the record has gone a minute without a sign of life.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var read = Events(await client.GetStringAsync($"/v1/responses/{id}?stream=true"));
        Assert.Equal(["response.created", "response.in_progress"], read.Select(e => e.GetProperty("type").GetString()));
        Assert.InRange(clock.Elapsed.TotalSeconds, 3, 30);
        Assert.Equal("failed", Status(await Get(client, id)));
    }
}
