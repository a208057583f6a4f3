using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ResponsesApiTests;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>Stored responses beyond one process: a restart with Sessions:Path, two replicas over a
/// real Redis, and owners (API keys) that never see each other's responses.</summary>
public sealed class ResponsesStoreTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-responses-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    static object Turn(string input, string? previous) => new { input, previous_response_id = previous, max_output_tokens = 5, temperature = 0 };
    static int Cached(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32();
    static string Id(JsonElement r) => r.GetProperty("id").GetString()!;
    static string Text(JsonElement r) => r.GetProperty("output_text").GetString()!;

    [Fact]
    public async Task A_response_is_continued_after_a_restart_with_the_disk_store()
    {
        string id;
        JsonElement expected;
        await using (var a = new ServerFactory().With("Sessions:Path", _dir))
        {
            var client = await a.ReadyClientAsync();
            id = Id(await Create(client, Turn("Tell me about rivers.", null)));
            // What the continuation gives on this server, from the parked state.
            expected = await Create(client, Turn("And lakes?", id));
            Assert.True(Cached(expected) > 0);
        }
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(_dir, "responses"), "*.json"));

        await using var b = new ServerFactory().With("Sessions:Path", _dir);
        var clientB = await b.ReadyClientAsync();
        await ((Engine.EngineClient)b.Host.Inference!.Engine).StoreIndexed;
        var stored = await ReadJson(await clientB.GetAsync($"/v1/responses/{id}"));
        Assert.Equal(id, Id(stored));
        var resumed = await Create(clientB, Turn("And lakes?", id));
        Assert.Equal(Cached(expected), Cached(resumed));   // the state came back from disk
        Assert.Equal(Text(expected), Text(resumed));

        // Deleting on the new server removes the stored record and the state files of that response
        // (a state record's header names its session in plain text when no key seals it).
        int StateFilesOf(string session) => Directory.GetFiles(_dir, "*.state")
            .Count(f => System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(f)).Contains(session));
        Assert.True(StateFilesOf(id) > 0);
        Assert.Equal(HttpStatusCode.OK, (await clientB.DeleteAsync($"/v1/responses/{id}")).StatusCode);
        Assert.Equal(0, StateFilesOf(id));
        Assert.True(StateFilesOf(Id(expected)) > 0);   // another response's state (written by server A) stays
        Assert.Equal(HttpStatusCode.NotFound, (await clientB.GetAsync($"/v1/responses/{id}")).StatusCode);
    }

    [Fact]
    public async Task A_response_stored_on_one_replica_is_continued_on_another_through_redis()
    {
        using var redis = new RedisServer();
        await using var a = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString).With("Sessions:TimeToLive", "01:00:00");
        await using var b = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString).With("Sessions:TimeToLive", "01:00:00");
        var clientA = await a.ReadyClientAsync();
        var clientB = await b.ReadyClientAsync();
        var first = await Create(clientA, Turn("Tell me about rivers.", null));
        // The parked state is written in the background: wait until replica B can find it.
        using (var probe = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            var server = probe.GetServer(probe.GetEndPoints()[0]);
            for (int i = 0; i < 100 && !server.Keys(pattern: "rg:state:*").Any(); i++) await Task.Delay(50);
        }
        var onB = await Create(clientB, Turn("And lakes?", Id(first)));
        Assert.True(Cached(onB) > 0, "replica B did not continue the state replica A stored");
        using (var probe = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            // Every stored state and response carries the time to live (restoring restarts it).
            var server = probe.GetServer(probe.GetEndPoints()[0]);
            var keys = server.Keys(pattern: "rg:*").Where(k => !k.ToString().StartsWith("rg:set:")).ToList();
            Assert.NotEmpty(keys);
            foreach (var key in keys)
                Assert.InRange((await probe.GetDatabase().KeyTimeToLiveAsync(key))!.Value, TimeSpan.FromMinutes(50), TimeSpan.FromHours(1));
        }
        Assert.Equal(Id(first), onB.GetProperty("previous_response_id").GetString());
        Assert.Equal(HttpStatusCode.OK, (await clientA.GetAsync($"/v1/responses/{Id(onB)}")).StatusCode);

        // Redis gone: reading a stored response is a 503 (retry later), never a 500.
        redis.Stop();
        var down = await clientB.GetAsync($"/v1/responses/{Id(first)}");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, down.StatusCode);
    }

    [Fact]
    public async Task Another_api_key_gets_a_404_for_a_response_it_did_not_create()
    {
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "key-one").With("Auth:ApiKeys:1", "key-two");
        var client = await server.ReadyClientAsync();
        var mine = await Create(client, Turn("Secret plans.", null), key: "key-one");
        foreach (var (method, path) in new[] { ("GET", $"/v1/responses/{Id(mine)}"), ("GET", $"/v1/responses/{Id(mine)}/input_items"), ("DELETE", $"/v1/responses/{Id(mine)}") })
        {
            var request = new HttpRequestMessage(new HttpMethod(method), path);
            request.Headers.Authorization = new("Bearer", "key-two");
            Assert.Equal(HttpStatusCode.NotFound, (await client.SendAsync(request)).StatusCode);
        }
        var error = await Create(client, Turn("Tell me.", Id(mine)), HttpStatusCode.NotFound, key: "key-two");
        Assert.Equal("previous_response_id", error.GetProperty("error").GetProperty("param").GetString());
        // The owner still has it.
        Assert.True(Cached(await Create(client, Turn("Go on.", Id(mine)), key: "key-one")) > 0);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_stored_response_expires_after_the_sessions_time_to_live(bool onDisk)
    {
        await using var server = new ServerFactory().With("Sessions:TimeToLive", "00:00:01").With("Sessions:Path", onDisk ? _dir : "");
        var client = await server.ReadyClientAsync();
        var r = await Create(client, Turn("Brief.", null));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/responses/{Id(r)}")).StatusCode);
        await Task.Delay(1500);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/responses/{Id(r)}")).StatusCode);
        await Create(client, Turn("Still there?", Id(r)), HttpStatusCode.NotFound);
        if (onDisk) Assert.Empty(Directory.GetFiles(Path.Combine(_dir, "responses"), "*.json"));   // the expired record is gone from disk too
    }
}
