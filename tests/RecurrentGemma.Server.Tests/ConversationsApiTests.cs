using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Server.Responses;
using static RecurrentGemma.Server.Tests.ResponsesApiTests;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// /v1/conversations over raw HTTP: responses that run in a conversation prefill only what was
/// added since its last answer and answer as a stateless request of the whole transcript does;
/// items added, listed, read and deleted; the lock that keeps two writers apart; the errors.
/// </summary>
public class ConversationsApiTests(DemoServer server) : IClassFixture<DemoServer>
{
    static int Cached(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32();
    static int In(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens").GetInt32();
    static int Out(JsonElement r) => r.GetProperty("usage").GetProperty("output_tokens").GetInt32();
    static string Id(JsonElement r) => r.GetProperty("id").GetString()!;
    static string Text(JsonElement r) => r.GetProperty("output_text").GetString()!;
    /// <summary>Ids fed into the state by a response cut at max_output_tokens: its last sampled id never is.</summary>
    static int Fed(JsonElement r) => In(r) + Out(r) - 1;

    static async Task<JsonElement> Send(HttpClient client, HttpMethod method, string path, object? body = null, HttpStatusCode expect = HttpStatusCode.OK)
    {
        var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = JsonBody(JsonSerializer.Serialize(body));
        var r = await client.SendAsync(request);
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == expect, $"{method} {path}: {r.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    static object Turn(string input, string conversation, int max = 5) => new { input, conversation, max_output_tokens = max, temperature = 0 };

    // A short JSON answer per turn: a text that starts with "{" and ends with "}", which the chat
    // template (it trims message text) renders exactly as sampled, so a stateless request that
    // sends the answers back as text renders the same ids the conversation's state read.
    static readonly object Word = new
    {
        format = new
        {
            type = "json_schema", name = "answer", strict = true,
            schema = new { type = "object", properties = new { word = new { type = "string", maxLength = 8 } }, required = new[] { "word" }, additionalProperties = false },
        },
    };

    static object JsonTurn(string input, string conversation, int seed) =>
        new { input, conversation, max_output_tokens = 40, seed, text = Word };

    /// <summary>A stateless response of the same transcript (every item sent as input).</summary>
    static async Task<JsonElement> Stateless(HttpClient client, JsonElement conversationItems, string input, int seed)
    {
        var items = conversationItems.GetProperty("data").EnumerateArray()
            .Select(i => (object)new { role = i.GetProperty("role").GetString(), content = i.GetProperty("content")[0].GetProperty("text").GetString() })
            .Append(new { role = "user", content = input }).ToArray();
        return await Create(client, new { input = items, store = false, max_output_tokens = 40, seed, text = Word });
    }

    /// <summary>The ids a completed JSON answer left in the state: all but perhaps the last (a
    /// completed value is not fed back).</summary>
    static void ContinuedFrom(JsonElement previous, JsonElement r) =>
        Assert.InRange(Cached(r), In(previous) + Out(previous) - 1, In(previous) + Out(previous));

    [Fact]
    public async Task Responses_in_a_conversation_prefill_only_what_was_added_and_answer_as_the_whole_transcript_does()
    {
        var client = await server.ReadyClientAsync();
        var conversation = await Send(client, HttpMethod.Post, "/v1/conversations", new
        {
            metadata = new { topic = "rivers" }, items = new object[] { new { role = "user", content = "We talk about rivers." }, new { role = "assistant", content = "Gladly." } },
        });
        string cid = Id(conversation);
        Assert.StartsWith("conv_", cid);
        Assert.Equal("conversation", conversation.GetProperty("object").GetString());
        Assert.Equal("rivers", conversation.GetProperty("metadata").GetProperty("topic").GetString());

        JsonElement? last = null;
        for (int turn = 1; turn <= 4; turn++)
        {
            string input = $"Question {turn}: which river is longest?";
            var before = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?order=asc&limit=100");
            var r = await Create(client, JsonTurn(input, cid, turn));
            Assert.Equal("completed", r.GetProperty("status").GetString());
            Assert.Equal(cid, r.GetProperty("conversation").GetProperty("id").GetString());
            // The first turn prefills the two starting items; each later one continues the parked state.
            if (last is { } previous) ContinuedFrom(previous, r);
            else Assert.Equal(0, Cached(r));
            Assert.Equal(Text(await Stateless(client, before, input, turn)), Text(r));
            last = r;
        }
        var items = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?order=asc&limit=100");
        Assert.Equal(2 + 4 * 2, items.GetProperty("data").GetArrayLength());
        Assert.Equal("Question 4: which river is longest?", items.GetProperty("data")[8].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(Text(last!.Value), items.GetProperty("data")[9].GetProperty("content")[0].GetProperty("text").GetString());

        // Items added between turns come after the parked state: still only the new ids are prefilled.
        var added = await Send(client, HttpMethod.Post, $"/v1/conversations/{cid}/items", new
        {
            items = new object[] { new { role = "user", content = "Note: the Nile." }, new { role = "assistant", content = "Noted." } },
        });
        Assert.Equal(2, added.GetProperty("data").GetArrayLength());
        var withAdded = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?order=asc&limit=100");
        var afterAdd = await Create(client, JsonTurn("And the Amazon?", cid, 5));
        ContinuedFrom(last.Value, afterAdd);
        Assert.Equal(Text(await Stateless(client, withAdded, "And the Amazon?", 5)), Text(afterAdd));

        // Deleting an item the state has read: the next response prefills the transcript whole and
        // still answers as the stateless request of what is left.
        string noteId = added.GetProperty("data")[0].GetProperty("id").GetString()!;
        var stillThere = await Send(client, HttpMethod.Delete, $"/v1/conversations/{cid}/items/{noteId}");
        Assert.Equal(cid, Id(stillThere));
        await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items/{noteId}", expect: HttpStatusCode.NotFound);
        var remaining = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?order=asc&limit=100");
        Assert.Equal(2 + 4 * 2 + 1 + 2, remaining.GetProperty("data").GetArrayLength());
        var afterDelete = await Create(client, JsonTurn("Which is wider?", cid, 6));
        Assert.Equal(0, Cached(afterDelete));
        Assert.Equal(Text(await Stateless(client, remaining, "Which is wider?", 6)), Text(afterDelete));
    }

    [Fact]
    public async Task Items_are_paged_read_one_by_one_and_the_conversation_updated_and_deleted()
    {
        var client = await server.ReadyClientAsync();
        var items = Enumerable.Range(0, 7).Select(i => (object)new { role = "user", content = $"item {i}" }).ToArray();
        string cid = Id(await Send(client, HttpMethod.Post, "/v1/conversations", new { items }));

        // Newest first by default, three at a time, following last_id.
        var seen = new List<string>();
        string? after = null;
        while (true)
        {
            var page = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?limit=3" + (after is null ? "" : $"&after={after}"));
            foreach (var item in page.GetProperty("data").EnumerateArray()) seen.Add(item.GetProperty("content")[0].GetProperty("text").GetString()!);
            if (!page.GetProperty("has_more").GetBoolean()) break;
            after = page.GetProperty("last_id").GetString();
        }
        Assert.Equal(Enumerable.Range(0, 7).Reverse().Select(i => $"item {i}"), seen);

        var asc = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?order=asc&limit=1");
        string firstId = asc.GetProperty("first_id").GetString()!;
        var one = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items/{firstId}");
        Assert.Equal("item 0", one.GetProperty("content")[0].GetProperty("text").GetString());

        var updated = await Send(client, HttpMethod.Post, $"/v1/conversations/{cid}", new { metadata = new { stage = "two" } });
        Assert.Equal("two", updated.GetProperty("metadata").GetProperty("stage").GetString());
        Assert.Equal("two", (await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}")).GetProperty("metadata").GetProperty("stage").GetString());

        var deleted = await Send(client, HttpMethod.Delete, $"/v1/conversations/{cid}");
        Assert.Equal("conversation.deleted", deleted.GetProperty("object").GetString());
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}", expect: HttpStatusCode.NotFound);
        await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items", expect: HttpStatusCode.NotFound);
        await Send(client, HttpMethod.Delete, $"/v1/conversations/{cid}", expect: HttpStatusCode.NotFound);
        var gone = await Create(client, Turn("Hello?", cid), HttpStatusCode.NotFound);
        Assert.Equal("conversation", gone.GetProperty("error").GetProperty("param").GetString());

        // A POST without a body is an empty conversation.
        var empty = await client.PostAsync("/v1/conversations", null);
        Assert.Equal(HttpStatusCode.OK, empty.StatusCode);
        string emptyId = (await ReadJson(empty)).GetProperty("id").GetString()!;
        Assert.Equal(0, (await Send(client, HttpMethod.Get, $"/v1/conversations/{emptyId}/items")).GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task A_conversation_being_changed_is_locked_for_everyone_else()
    {
        var client = await server.ReadyClientAsync();
        string cid = Id(await Send(client, HttpMethod.Post, "/v1/conversations", new { }));
        var store = server.Services.GetRequiredService<ResponseStore>();
        using (var held = store.TryLock(null, cid, TimeSpan.FromMinutes(1)))
        {
            Assert.NotNull(held);
            Assert.Null(store.TryLock(null, cid, TimeSpan.FromMinutes(1)));
            foreach (var (method, path, body) in new (HttpMethod, string, object)[]
            {
                (HttpMethod.Post, "/v1/responses", Turn("Hi", cid)),
                (HttpMethod.Post, $"/v1/conversations/{cid}/items", new { items = new[] { new { role = "user", content = "x" } } }),
                (HttpMethod.Post, $"/v1/conversations/{cid}", new { metadata = new { a = "b" } }),
            })
            {
                var error = (await Send(client, method, path, body, HttpStatusCode.Conflict)).GetProperty("error");
                Assert.Equal("conversation_locked", error.GetProperty("code").GetString());
            }
            // Reading needs no lock.
            await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items");
        }
        await Create(client, Turn("Hi", cid));
        Assert.Equal(2, (await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items")).GetProperty("data").GetArrayLength());
        // The response let go of the lock when its answer was added.
        using var again = store.TryLock(null, cid, TimeSpan.FromSeconds(1));
        Assert.NotNull(again);
    }

    [Fact]
    public async Task A_streamed_response_extends_the_conversation_as_a_plain_one_does()
    {
        var client = await server.ReadyClientAsync();
        string plain = Id(await Send(client, HttpMethod.Post, "/v1/conversations", new { }));
        string streamed = Id(await Send(client, HttpMethod.Post, "/v1/conversations", new { }));
        var expected = await Create(client, Turn("Tell me a story.", plain));
        var r = await client.PostAsync("/v1/responses", JsonBody(JsonSerializer.Serialize(new { input = "Tell me a story.", conversation = streamed, max_output_tokens = 5, temperature = 0, stream = true })));
        string sse = await r.Content.ReadAsStringAsync();
        Assert.Contains("response.completed", sse.Replace("response.incomplete", "response.completed"));
        var a = await Send(client, HttpMethod.Get, $"/v1/conversations/{plain}/items?order=asc");
        var b = await Send(client, HttpMethod.Get, $"/v1/conversations/{streamed}/items?order=asc");
        Assert.Equal(2, b.GetProperty("data").GetArrayLength());
        Assert.Equal(a.GetProperty("data")[1].GetProperty("content")[0].GetProperty("text").GetString(), b.GetProperty("data")[1].GetProperty("content")[0].GetProperty("text").GetString());
        // The next turn continues the streamed one's state just the same.
        var next = await Create(client, Turn("Go on.", streamed));
        Assert.Equal(Fed(expected), Cached(next));
    }

    [Fact]
    public async Task An_item_reference_stands_for_the_item_it_names_in_a_conversation_or_a_previous_response()
    {
        var client = await server.ReadyClientAsync();
        var created = await Send(client, HttpMethod.Post, "/v1/conversations", new { items = new[] { new { role = "user", content = "Remember the word heron.", id = "msg_note" } } });
        string cid = Id(created);
        // Referring to the note equals sending its text again, in a conversation (with or without the type)...
        var byText = await Create(client, new { input = new object[] { new { role = "user", content = "Remember the word heron." } }, conversation = cid, max_output_tokens = 4, temperature = 0, store = false });
        string cid2 = Id(await Send(client, HttpMethod.Post, "/v1/conversations", new { items = new[] { new { role = "user", content = "Remember the word heron.", id = "msg_note" } } }));
        var byReference = await Create(client, new { input = new object[] { new { id = "msg_note" } }, conversation = cid2, max_output_tokens = 4, temperature = 0, store = false });
        Assert.Equal(In(byText), In(byReference));
        Assert.Equal(Text(byText), Text(byReference));
        // ...and the conversation holds a copy with an id of its own.
        var items = await Send(client, HttpMethod.Get, $"/v1/conversations/{cid2}/items?order=asc");
        Assert.Equal("Remember the word heron.", items.GetProperty("data")[1].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.NotEqual("msg_note", items.GetProperty("data")[1].GetProperty("id").GetString());

        // In a continuation of a stored response: an item of its context (here its question, asked again).
        var first = await Create(client, new { input = "Name a bird.", max_output_tokens = 3, temperature = 0 });
        string questionId = (await Send(client, HttpMethod.Get, $"/v1/responses/{Id(first)}/input_items")).GetProperty("data")[0].GetProperty("id").GetString()!;
        var again = await Create(client, new { input = new object[] { new { type = "item_reference", id = questionId } }, previous_response_id = Id(first), max_output_tokens = 2, temperature = 0 });
        var asText = await Create(client, new { input = "Name a bird.", previous_response_id = Id(first), max_output_tokens = 2, temperature = 0 });
        Assert.Equal(In(asText), In(again));
        Assert.Equal(Text(asText), Text(again));

        // Unknown, or nothing to find it in: a 400 naming the reference.
        await AssertRefusedAsync(client, "/v1/responses", JsonSerializer.Serialize(new { input = new object[] { new { type = "item_reference", id = "msg_none" } }, conversation = cid }), "input[0].id");
        await AssertRefusedAsync(client, "/v1/responses", """{"input": [{"type": "item_reference", "id": "msg_note"}]}""", "input[0].id");
        await AssertRefusedAsync(client, "/v1/responses", """{"input": [{"type": "item_reference"}]}""", "input[0].id");
        await AssertRefusedAsync(client, $"/v1/conversations/{cid}/items", """{"items": [{"type": "item_reference", "id": "msg_note"}]}""", "items[0].type");
    }

    [Theory]
    [InlineData("/v1/conversations", """{"metadata": {"a": 1}}""", "metadata.a")]
    [InlineData("/v1/conversations", """{"metadata": {"k0": "", "k1": "", "k2": "", "k3": "", "k4": "", "k5": "", "k6": "", "k7": "", "k8": "", "k9": "", "k10": "", "k11": "", "k12": "", "k13": "", "k14": "", "k15": "", "k16": ""}}""", "metadata")]
    [InlineData("/v1/conversations", """{"items": {"role": "user"}}""", "items")]
    [InlineData("/v1/conversations", """{"items": [{"type": "image", "id": "x"}]}""", "items[0].type")]
    [InlineData("/v1/conversations", """{"items": [{"role": "user", "content": "a", "id": "m1"}, {"role": "user", "content": "b", "id": "m1"}]}""", "items[1].id")]
    [InlineData("/v1/conversations", """{"items": [{"role": "robot", "content": "a"}]}""", "items[0].role")]
    [InlineData("/v1/responses", """{"input": "x", "conversation": 5}""", "conversation")]
    [InlineData("/v1/responses", """{"input": "x", "conversation": {"name": "c"}}""", "conversation.id")]
    [InlineData("/v1/responses", """{"input": "x", "conversation": "conv_1", "previous_response_id": "resp_1"}""", "conversation")]
    public async Task Bad_requests_name_their_field(string path, string body, string param) =>
        await AssertRefusedAsync(await server.ReadyClientAsync(), path, body, param);

    [Fact]
    public async Task Bad_item_requests_name_their_field()
    {
        var client = await server.ReadyClientAsync();
        var c = await Send(client, HttpMethod.Post, "/v1/conversations", new { items = new[] { new { role = "user", content = "a", id = "msg_fixed" } } });
        string cid = Id(c);
        var tooMany = Enumerable.Range(0, 21).Select(i => new { role = "user", content = "x" }).ToArray();
        await AssertRefusedAsync(client, $"/v1/conversations/{cid}/items", JsonSerializer.Serialize(new { items = tooMany }), "items");
        await AssertRefusedAsync(client, $"/v1/conversations/{cid}/items", "{}", "items");
        await AssertRefusedAsync(client, $"/v1/conversations/{cid}/items", """{"items": [{"role": "user", "content": "b", "id": "msg_fixed"}]}""", "items[0].id");
        await AssertRefusedAsync(client, "/v1/responses", JsonSerializer.Serialize(new { input = new[] { new { role = "user", content = "b", id = "msg_fixed" } }, conversation = cid }), "input[0].id");
        await AssertRefusedAsync(client, $"/v1/conversations/{cid}", "{}", "metadata");
        foreach (var (query, param) in new[] { ("limit=abc", "limit"), ("limit=0", "limit"), ("order=up", "order"), ("after=nope", "after") })
        {
            var error = (await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items?{query}", expect: HttpStatusCode.BadRequest)).GetProperty("error");
            Assert.Equal(param, error.GetProperty("param").GetString());
        }
        await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items/msg_none", expect: HttpStatusCode.NotFound);
        await Send(client, HttpMethod.Delete, $"/v1/conversations/{cid}/items/msg_none", expect: HttpStatusCode.NotFound);
        // Nothing was added by the refused calls.
        Assert.Equal(1, (await Send(client, HttpMethod.Get, $"/v1/conversations/{cid}/items")).GetProperty("data").GetArrayLength());
    }
}
