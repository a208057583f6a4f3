using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Server.Responses;
using static RecurrentGemma.Server.Tests.ResponsesApiTests;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>Conversations beyond one process: a restart with Sessions:Path, two replicas over a
/// real Redis (items, state and the lock shared), and owners that never see each other's.</summary>
public sealed class ConversationsStoreTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-conversations-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    static object Turn(string input, string conversation) => new { input, conversation, max_output_tokens = 5, temperature = 0 };
    static int Cached(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32();
    static int Fed(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens").GetInt32() + r.GetProperty("usage").GetProperty("output_tokens").GetInt32() - 1;
    static string Id(JsonElement r) => r.GetProperty("id").GetString()!;

    static async Task<JsonElement> NewConversation(HttpClient client, string? key = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/conversations") { Content = JsonBody("{}") };
        if (key is not null) request.Headers.Authorization = new("Bearer", key);
        var r = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        return await ReadJson(r);
    }

    static async Task<int> ItemCount(HttpClient client, string cid) =>
        (await ReadJson(await client.GetAsync($"/v1/conversations/{cid}/items?limit=100"))).GetProperty("data").GetArrayLength();

    [Fact]
    public async Task A_conversation_is_continued_after_a_restart_with_the_disk_store()
    {
        string cid;
        JsonElement first;
        await using (var a = new ServerFactory().With("Sessions:Path", _dir))
        {
            var client = await a.ReadyClientAsync();
            cid = Id(await NewConversation(client));
            first = await Create(client, Turn("Tell me about rivers.", cid));
        }
        await using var b = new ServerFactory().With("Sessions:Path", _dir);
        var clientB = await b.ReadyClientAsync();
        await ((Engine.EngineClient)b.Host.Inference!.Engine).StoreIndexed;
        Assert.Equal(2, await ItemCount(clientB, cid));
        var resumed = await Create(clientB, Turn("And lakes?", cid));
        Assert.Equal(Fed(first), Cached(resumed));   // the conversation's state came back from disk
        Assert.Equal(4, await ItemCount(clientB, cid));

        // Deleting the conversation removes its state files too.
        int StateFilesOf(string session) => Directory.GetFiles(_dir, "*.state")
            .Count(f => System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(f)).Contains(session));
        for (int i = 0; i < 100 && StateFilesOf(cid) == 0; i++) await Task.Delay(50);
        Assert.True(StateFilesOf(cid) > 0);
        Assert.Equal(HttpStatusCode.OK, (await clientB.DeleteAsync($"/v1/conversations/{cid}")).StatusCode);
        Assert.Equal(0, StateFilesOf(cid));
    }

    [Fact]
    public async Task Two_replicas_share_a_conversation_its_state_and_its_lock_through_redis()
    {
        using var redis = new RedisServer();
        await using var a = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        await using var b = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        var clientA = await a.ReadyClientAsync();
        var clientB = await b.ReadyClientAsync();
        string cid = Id(await NewConversation(clientA));
        var first = await Create(clientA, Turn("Tell me about rivers.", cid));
        using (var probe = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            var server = probe.GetServer(probe.GetEndPoints()[0]);
            for (int i = 0; i < 100 && !server.Keys(pattern: "rg:state:*").Any(); i++) await Task.Delay(50);
        }
        var onB = await Create(clientB, Turn("And lakes?", cid));
        Assert.Equal(Fed(first), Cached(onB));
        Assert.Equal(4, await ItemCount(clientA, cid));

        // A change in progress on replica A holds the conversation for replica B as well.
        using (var held = a.Services.GetRequiredService<ResponseStore>().TryLock(null, cid, TimeSpan.FromMinutes(1)))
        {
            Assert.NotNull(held);
            var locked = await clientB.PostAsync($"/v1/conversations/{cid}/items", JsonBody("""{"items": [{"role": "user", "content": "x"}]}"""));
            Assert.Equal(HttpStatusCode.Conflict, locked.StatusCode);
        }
        var added = await clientB.PostAsync($"/v1/conversations/{cid}/items", JsonBody("""{"items": [{"role": "user", "content": "x"}]}"""));
        Assert.Equal(HttpStatusCode.OK, added.StatusCode);
        Assert.Equal(5, await ItemCount(clientA, cid));

        // Redis gone: a 503 (retry later), never a 500.
        redis.Stop();
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await clientB.GetAsync($"/v1/conversations/{cid}")).StatusCode);
    }

    [Fact]
    public async Task Another_api_key_gets_a_404_for_a_conversation_it_did_not_create()
    {
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "key-one").With("Auth:ApiKeys:1", "key-two");
        var client = await server.ReadyClientAsync();
        string cid = Id(await NewConversation(client, "key-one"));
        foreach (var (method, path, body) in new (string, string, string?)[]
        {
            ("GET", $"/v1/conversations/{cid}", null), ("GET", $"/v1/conversations/{cid}/items", null), ("DELETE", $"/v1/conversations/{cid}", null),
            ("POST", $"/v1/conversations/{cid}", """{"metadata": {}}"""), ("POST", $"/v1/conversations/{cid}/items", """{"items": [{"role": "user", "content": "x"}]}"""),
        })
        {
            var request = new HttpRequestMessage(new HttpMethod(method), path);
            if (body is not null) request.Content = JsonBody(body);
            request.Headers.Authorization = new("Bearer", "key-two");
            Assert.Equal(HttpStatusCode.NotFound, (await client.SendAsync(request)).StatusCode);
        }
        var error = await Create(client, Turn("Tell me.", cid), HttpStatusCode.NotFound, key: "key-two");
        Assert.Equal("conversation", error.GetProperty("error").GetProperty("param").GetString());
        // The owner still has it, empty.
        await Create(client, Turn("Go on.", cid), key: "key-one");
    }
}
