#pragma warning disable OPENAI001 // the .NET client marks stored chat completions experimental; the server implements them.
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// store: true on chat completions: the completion (plain or streamed) is kept with its messages
/// and metadata, read back, listed with filters and pages, its metadata replaced, deleted; other
/// API keys never see it; it outlives a restart with the disk store; the official .NET client.
/// </summary>
public sealed class StoredChatCompletionsTests(DemoServer server) : IClassFixture<DemoServer>, IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-stored-chat-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    static async Task<JsonElement> Json(HttpResponseMessage r, HttpStatusCode expect = HttpStatusCode.OK)
    {
        var json = await ReadJson(r);
        Assert.True(r.StatusCode == expect, $"{r.StatusCode}: {json}");
        return json;
    }

    static string Chat(string run, bool stream = false, int n = 1, string content = "\"Hello\"") =>
        $$"""{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": {{content}}}], "max_tokens": 4, "seed": 3, "n": {{n}}, "store": true, "metadata": {"run": "{{run}}"}, "stream": {{(stream ? "true" : "false")}}}""";

    static string Text(JsonElement completion, int i = 0) => completion.GetProperty("choices")[i].GetProperty("message").GetProperty("content").GetString()!;

    [Fact]
    public async Task A_stored_completion_is_read_back_listed_updated_and_deleted()
    {
        var client = await server.ReadyClientAsync();
        string run = Guid.NewGuid().ToString("N");
        var plain = await Json(await client.PostAsync("/v1/chat/completions", JsonBody(Chat(run, n: 2, content: """[{"type": "text", "text": "Hello"}]"""))));
        string id = plain.GetProperty("id").GetString()!;

        var stored = await Json(await client.GetAsync($"/v1/chat/completions/{id}"));
        Assert.Equal(Text(plain, 0), Text(stored, 0));
        Assert.Equal(Text(plain, 1), Text(stored, 1));
        Assert.Equal(run, stored.GetProperty("metadata").GetProperty("run").GetString());
        Assert.Equal(plain.GetProperty("usage").ToString(), stored.GetProperty("usage").ToString());

        // A streamed one keeps what was streamed.
        var sse = await (await client.PostAsync("/v1/chat/completions", JsonBody(Chat(run, stream: true)))).Content.ReadAsStringAsync();
        var chunks = sse.Split('\n').Where(l => l.StartsWith("data: {")).Select(l => JsonDocument.Parse(l[6..]).RootElement).ToList();
        string streamedId = chunks[0].GetProperty("id").GetString()!;
        string streamedText = string.Concat(chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray())
            .Select(c => c.GetProperty("delta").TryGetProperty("content", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : ""));
        Assert.Equal(streamedText, Text(await Json(await client.GetAsync($"/v1/chat/completions/{streamedId}"))));
        // Not stored without store: true.
        var unstored = await Json(await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}""")));
        await Json(await client.GetAsync($"/v1/chat/completions/{unstored.GetProperty("id").GetString()}"), HttpStatusCode.NotFound);

        // Listed oldest first, filtered by metadata and model, paged.
        var listed = await Json(await client.GetAsync($"/v1/chat/completions?metadata[run]={run}"));
        Assert.Equal([id, streamedId], listed.GetProperty("data").EnumerateArray().Select(c => c.GetProperty("id").GetString()));
        var desc = await Json(await client.GetAsync($"/v1/chat/completions?metadata[run]={run}&order=desc&limit=1"));
        Assert.Equal(streamedId, desc.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.True(desc.GetProperty("has_more").GetBoolean());
        var next = await Json(await client.GetAsync($"/v1/chat/completions?metadata[run]={run}&order=desc&limit=1&after={streamedId}"));
        Assert.Equal(id, next.GetProperty("data")[0].GetProperty("id").GetString());
        Assert.False(next.GetProperty("has_more").GetBoolean());
        Assert.Equal(0, (await Json(await client.GetAsync($"/v1/chat/completions?metadata[run]={run}&model=other"))).GetProperty("data").GetArrayLength());

        // The request's messages, with ids; a content of parts keeps its parts.
        var messages = await Json(await client.GetAsync($"/v1/chat/completions/{id}/messages"));
        Assert.Equal([$"{id}-0", $"{id}-1"], messages.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        Assert.Equal("Be brief.", messages.GetProperty("data")[0].GetProperty("content").GetString());
        Assert.Equal("Hello", messages.GetProperty("data")[1].GetProperty("content").GetString());
        Assert.Equal("text", messages.GetProperty("data")[1].GetProperty("content_parts")[0].GetProperty("type").GetString());

        // New metadata: shown, and what the list filters on.
        var updated = await Json(await client.PostAsync($"/v1/chat/completions/{id}", JsonBody("""{"metadata": {"run": "moved"}}""")));
        Assert.Equal("moved", updated.GetProperty("metadata").GetProperty("run").GetString());
        Assert.Single((await Json(await client.GetAsync($"/v1/chat/completions?metadata[run]={run}"))).GetProperty("data").EnumerateArray());

        var deleted = await Json(await client.DeleteAsync($"/v1/chat/completions/{streamedId}"));
        Assert.Equal("chat.completion.deleted", deleted.GetProperty("object").GetString());
        await Json(await client.GetAsync($"/v1/chat/completions/{streamedId}"), HttpStatusCode.NotFound);
        Assert.Empty((await Json(await client.GetAsync($"/v1/chat/completions?metadata[run]={run}"))).GetProperty("data").EnumerateArray());
    }

    [Fact]
    public async Task Bad_requests_name_their_field()
    {
        var client = await server.ReadyClientAsync();
        var tooMany = string.Join(", ", Enumerable.Range(0, 17).Select(i => $"\"k{i}\": \"v\""));
        await AssertRefusedAsync(client, "/v1/chat/completions", $$$"""{"messages": [{"role": "user", "content": "Hi"}], "store": true, "metadata": {{{tooMany}}}}""", "metadata");
        var id = (await Json(await client.PostAsync("/v1/chat/completions", JsonBody(Chat("bad"))))).GetProperty("id").GetString();
        await AssertRefusedAsync(client, $"/v1/chat/completions/{id}", "{}", "metadata");
        foreach (var (query, param) in new[] { ("limit=0", "limit"), ("order=up", "order"), ("after=chatcmpl-none", "after") })
            Assert.Equal(param, (await Json(await client.GetAsync($"/v1/chat/completions?{query}"), HttpStatusCode.BadRequest)).GetProperty("error").GetProperty("param").GetString());
        var missing = await Json(await client.GetAsync("/v1/chat/completions/chatcmpl-none"), HttpStatusCode.NotFound);
        Assert.Equal("completion_id", missing.GetProperty("error").GetProperty("param").GetString());
        await Json(await client.GetAsync("/v1/chat/completions/resp_x/messages"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Another_api_key_never_sees_it_and_it_outlives_a_restart_with_the_disk_store()
    {
        string id;
        await using (var a = new ServerFactory().With("Auth:ApiKeys:0", "key-one").With("Auth:ApiKeys:1", "key-two").With("Sessions:Path", _dir))
        {
            var client = await a.ReadyClientAsync();
            client.DefaultRequestHeaders.Authorization = new("Bearer", "key-one");
            id = (await Json(await client.PostAsync("/v1/chat/completions", JsonBody(Chat("mine"))))).GetProperty("id").GetString()!;
            client.DefaultRequestHeaders.Authorization = new("Bearer", "key-two");
            await Json(await client.GetAsync($"/v1/chat/completions/{id}"), HttpStatusCode.NotFound);
            Assert.Empty((await Json(await client.GetAsync("/v1/chat/completions"))).GetProperty("data").EnumerateArray());
            await Json(await client.DeleteAsync($"/v1/chat/completions/{id}"), HttpStatusCode.NotFound);
        }
        await using var b = new ServerFactory().With("Auth:ApiKeys:0", "key-one").With("Sessions:Path", _dir);
        var clientB = await b.ReadyClientAsync();
        clientB.DefaultRequestHeaders.Authorization = new("Bearer", "key-one");
        Assert.Equal(id, (await Json(await clientB.GetAsync("/v1/chat/completions"))).GetProperty("data")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task The_official_client_stores_reads_lists_updates_and_deletes()
    {
        var http = await server.ReadyClientAsync();
        var chat = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions
        {
            Endpoint = new Uri(http.BaseAddress!, "/v1"), Transport = new HttpClientPipelineTransport(http),
        }).GetChatClient("recurrentgemma-demo");
        string run = Guid.NewGuid().ToString("N");
        var options = new ChatCompletionOptions { StoredOutputEnabled = true, MaxOutputTokenCount = 4, Seed = 5 };
        options.Metadata["run"] = run;
        ChatCompletion made = await chat.CompleteChatAsync([new UserChatMessage("Hello")], options);

        ChatCompletion read = await chat.GetChatCompletionAsync(made.Id);
        Assert.Equal(made.Content[0].Text, read.Content[0].Text);
        var listed = new List<ChatCompletion>();
        var filter = new ChatCompletionCollectionOptions();
        filter.Metadata["run"] = run;
        await foreach (var c in chat.GetChatCompletionsAsync(filter)) listed.Add(c);
        Assert.Equal(made.Id, Assert.Single(listed).Id);
        var messages = new List<ChatCompletionMessageListDatum>();
        await foreach (var m in chat.GetChatCompletionMessagesAsync(made.Id)) messages.Add(m);
        Assert.Equal("Hello", Assert.Single(messages).Content);

        ChatCompletion updated = await chat.UpdateChatCompletionAsync(made.Id, new Dictionary<string, string> { ["run"] = run + "-done" });
        Assert.Equal(made.Id, updated.Id);
        filter.Metadata["run"] = run + "-done";
        var relisted = new List<ChatCompletion>();
        await foreach (var c in chat.GetChatCompletionsAsync(filter)) relisted.Add(c);
        Assert.Equal(made.Id, Assert.Single(relisted).Id);
        ChatCompletionDeletionResult deleted = await chat.DeleteChatCompletionAsync(made.Id);
        Assert.True(deleted.Deleted);
        var gone = await Assert.ThrowsAsync<ClientResultException>(() => chat.GetChatCompletionAsync(made.Id));
        Assert.Equal(404, gone.Status);
    }
}
