using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using RecurrentGemma.Engine;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// /v1/responses over raw HTTP: chains that prefill only their new input and equal chat completions
/// of the whole history, branching, deletion freeing the state, owners, store: false, the state
/// lost in every tier, and the errors.
/// </summary>
public class ResponsesApiTests(DemoServer server) : IClassFixture<DemoServer>
{
    const string Instructions = "You are terse.";

    public static async Task<JsonElement> Create(HttpClient client, object body, HttpStatusCode expect = HttpStatusCode.OK, string? key = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/responses") { Content = JsonBody(JsonSerializer.Serialize(body)) };
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var r = await client.SendAsync(request);
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == expect, $"{r.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    static object Turn(string input, string? previous, int max = 4) =>
        new { input, instructions = Instructions, previous_response_id = previous, max_output_tokens = max, temperature = 0 };

    static int Cached(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32();
    static int In(JsonElement r) => r.GetProperty("usage").GetProperty("input_tokens").GetInt32();
    static int Out(JsonElement r) => r.GetProperty("usage").GetProperty("output_tokens").GetInt32();
    static string Text(JsonElement r) => r.GetProperty("output_text").GetString()!;
    static string Id(JsonElement r) => r.GetProperty("id").GetString()!;
    /// <summary>The ids a continuation finds fed into the parent's state: all its input and answer,
    /// less the last sampled id when the answer was cut at max_output_tokens (never fed back).</summary>
    static int Fed(JsonElement r) => In(r) + Out(r) - (r.GetProperty("status").GetString() == "incomplete" ? 1 : 0);

    // A short JSON answer per turn: free sampling inside a string, and a text that starts with "{"
    // and ends with "}", which chat's template (it trims message text) renders exactly as sampled.
    static readonly object WordSchema = new
    {
        type = "object", properties = new { word = new { type = "string", maxLength = 8 } }, required = new[] { "word" }, additionalProperties = false,
    };

    [Fact]
    public async Task A_ten_turn_chain_prefills_only_new_input_and_equals_chat_completions_of_the_whole_history()
    {
        var client = await server.ReadyClientAsync();
        var history = new List<object> { new { role = "system", content = Instructions } };
        string? previous = null;
        JsonElement? last = null;
        for (int turn = 1; turn <= 10; turn++)
        {
            string input = $"Question number {turn}: what comes next?";
            var r = await Create(client, new
            {
                input, instructions = Instructions, previous_response_id = previous, max_output_tokens = 40, seed = turn,
                text = new { format = new { type = "json_schema", name = "answer", strict = true, schema = WordSchema } },
            });
            Assert.Equal("completed", r.GetProperty("status").GetString());
            if (last is { } parent)
            {
                // The whole earlier conversation came from the parked state (less the answer's last id
                // when the grammar ended it: a completed JSON value is not fed back).
                Assert.InRange(Cached(r), In(parent) + Out(parent) - 1, In(parent) + Out(parent));
                Assert.True(In(r) - Cached(r) < 30, $"turn {turn} prefilled {In(r) - Cached(r)} ids");
            }
            else Assert.Equal(0, Cached(r));

            // Chat completions given the whole history, the same seed and the same format: the same answer.
            history.Add(new { role = "user", content = input });
            var chat = await client.PostAsync("/v1/chat/completions", JsonBody(JsonSerializer.Serialize(new
            {
                messages = history, max_tokens = 40, seed = turn,
                response_format = new { type = "json_schema", json_schema = new { name = "answer", strict = true, schema = WordSchema } },
            })));
            var completion = await ReadJson(chat);
            Assert.True(chat.StatusCode == HttpStatusCode.OK, completion.ToString());
            Assert.Equal(completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), In(r));
            Assert.Equal(completion.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), Text(r));
            history.Add(new { role = "assistant", content = Text(r) });
            previous = Id(r);
            last = r;
        }
    }

    [Fact]
    public async Task A_response_continued_twice_branches_and_continuing_never_changes_the_parent()
    {
        var client = await server.ReadyClientAsync();
        var parent = await Create(client, Turn("Name a colour.", null, 5));
        var a = await Create(client, Turn("Another one?", Id(parent)));
        var b = await Create(client, Turn("Why that one?", Id(parent)));
        var a2 = await Create(client, Turn("Another one?", Id(parent)));
        Assert.All(new[] { a, b, a2 }, r => Assert.Equal(Fed(parent), Cached(r)));
        Assert.Equal(Text(a), Text(a2));
        Assert.NotEqual(In(a), In(b));
        // A branch continues from its own state.
        var deeper = await Create(client, Turn("And then?", Id(b)));
        Assert.Equal(Fed(b), Cached(deeper));
    }

    [Fact]
    public async Task With_every_tier_having_lost_the_state_the_transcript_is_prefilled_and_the_answer_is_the_same()
    {
        var client = await server.ReadyClientAsync();
        var parent = await Create(client, Turn("Count to three.", null, 5));
        var continued = await Create(client, Turn("Go on.", Id(parent)));
        Assert.Equal(Fed(parent), Cached(continued));
        Assert.True(await server.Host.Inference!.Engine.DropSessionAsync(Id(parent), null) >= 1);

        var again = await Create(client, Turn("Go on.", Id(parent)));
        Assert.True(Cached(again) < Fed(parent), $"cached {Cached(again)}: the parent's state should be gone");
        Assert.Equal(Text(continued), Text(again));
        Assert.Equal(In(continued), In(again));
    }

    [Fact]
    public async Task Deleting_frees_the_state_and_the_id_then_is_a_404_everywhere()
    {
        var client = await server.ReadyClientAsync();
        var r = await Create(client, Turn("Remember me.", null));
        var id = Id(r);
        await server.Until(e => e.RunningSequences == 0);
        int held = server.Engine.SlotsParked + server.Engine.HostStates;

        var deleted = await ReadJson(await client.DeleteAsync($"/v1/responses/{id}"));
        Assert.Equal("response.deleted", deleted.GetProperty("object").GetString());
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        Assert.Equal(held - 1, server.Engine.SlotsParked + server.Engine.HostStates);

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/responses/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/responses/{id}/input_items")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.DeleteAsync($"/v1/responses/{id}")).StatusCode);
        var error = await Create(client, Turn("Still there?", id), HttpStatusCode.NotFound);
        Assert.Equal("previous_response_id", error.GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Store_false_keeps_nothing()
    {
        var client = await server.ReadyClientAsync();
        await server.Until(e => e.RunningSequences == 0);
        int parked = server.Engine.SlotsParked;
        var r = await Create(client, new { input = "Forget this.", store = false, max_output_tokens = 3 });
        Assert.False(r.GetProperty("store").GetBoolean());
        await server.Until(e => e.RunningSequences == 0);
        Assert.Equal(parked, server.Engine.SlotsParked);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/responses/{Id(r)}")).StatusCode);
        await Create(client, Turn("More?", Id(r)), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Input_items_page_newest_first_with_after_and_order()
    {
        var client = await server.ReadyClientAsync();
        var first = await Create(client, new
        {
            input = new object[] { new { role = "developer", content = "Rules." }, new { role = "user", content = new[] { new { type = "input_text", text = "One." } } } },
            max_output_tokens = 3,
        });
        var second = await Create(client, new { input = "Two.", previous_response_id = Id(first), max_output_tokens = 3 });
        var page = await ReadJson(await client.GetAsync($"/v1/responses/{Id(second)}/input_items?limit=2"));
        var data = page.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        Assert.True(page.GetProperty("has_more").GetBoolean());
        Assert.Equal("Two.", data[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal("assistant", data[1].GetProperty("role").GetString());
        var rest = await ReadJson(await client.GetAsync($"/v1/responses/{Id(second)}/input_items?limit=2&after={page.GetProperty("last_id").GetString()}"));
        Assert.Equal(new[] { "user", "developer" }, rest.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("role").GetString()!).ToArray());
        Assert.False(rest.GetProperty("has_more").GetBoolean());
        var asc = await ReadJson(await client.GetAsync($"/v1/responses/{Id(second)}/input_items?order=asc"));
        Assert.Equal("Rules.", asc.GetProperty("data")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, (await client.GetAsync($"/v1/responses/{Id(second)}/input_items?limit=500")).StatusCode);
    }

    [Theory]
    [InlineData("""{"input":[{"role":"user","content":[{"type":"input_image","image_url":"http://x"}]}]}""", "input[0].content[0].type")]
    [InlineData("""{"input":[{"type":"web_search_call","id":"ws_1"}]}""", "input[0].type")]
    [InlineData("""{"input":[{"role":"wizard","content":"hi"}]}""", "input[0].role")]
    [InlineData("""{"input":[{"type":"function_call_output","call_id":"call_nope","output":"1"}]}""", "input[0].call_id")]
    [InlineData("""{"input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{nope"}]}""", "input[0].arguments")]
    [InlineData("""{"input":"hi","tools":[{"type":"web_search"}]}""", "tools[0].type")]
    [InlineData("""{"input":"hi","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":["function"]}}""", "tool_choice.type")]
    [InlineData("""{"input":"hi","truncation":"auto"}""", "truncation")]
    [InlineData("""{"input":"hi","background":true,"store":false}""", "background")]
    [InlineData("""{"input":"hi","prompt":{"id":"pmpt_1","version":"2"}}""", "prompt")]
    [InlineData("""{"input":"hi","context_management":[{"type":"compaction"}]}""", "context_management")]
    [InlineData("""{"input":"hi","max_output_tokens":0}""", "max_output_tokens")]
    [InlineData("""{"input":"hi","text":{"format":{"type":"json_schema","name":"bad name!","schema":{}}}}""", "text.format.name")]
    [InlineData("""{"input":"hi","text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object","properties":{"a":{"type":"strnig"}}}}}}""", "text.format.schema.properties.a.type")]
    [InlineData("""{"input":"   "}""", "input")]
    [InlineData("""{"input":[]}""", "input")]
    [InlineData("""{}""", "input")]
    [InlineData("""{"input":[{"role":"user","content":[{"type":"refusal","refusal":"no"}]}]}""", "input[0].content[0].type")]   // only an assistant's
    [InlineData("""{"input":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"refusal"}]},{"role":"user","content":"why"}]}""", "input[1].content[0].refusal")]
    [InlineData("""{"input":"hi","include":["message.output_text.logprobs","output_text.logprobs"]}""", "include[1]")]
    [InlineData("""{"input":"hi","include":[5]}""", "include[0]")]
    [InlineData("""{"input":"hi","include":"message.output_text.logprobs"}""", "include")]
    [InlineData("""{"input":"hi","include":["message.output_text.logprobs"],"top_logprobs":21}""", "top_logprobs")]
    public async Task Bad_requests_get_a_400_naming_the_field(string body, string param)
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/responses", JsonBody(body));
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.True(r.StatusCode == HttpStatusCode.BadRequest, error.ToString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task An_earlier_refusal_sent_back_as_input_is_the_assistants_text()
    {
        // A client that keeps its own history sends earlier output back; a declined answer comes as a refusal part.
        var client = await server.ReadyClientAsync();
        object History(object assistant) => new { input = new object[] { new { role = "user", content = "Hi" }, assistant, new { role = "user", content = "Why?" } }, max_output_tokens = 3, temperature = 0, store = false };
        var refused = await Create(client, History(new { role = "assistant", content = new[] { new { type = "refusal", refusal = "I cannot help with that." } } }));
        var said = await Create(client, History(new { role = "assistant", content = new[] { new { type = "output_text", text = "I cannot help with that." } } }));
        Assert.Equal(In(said), In(refused));
        Assert.Equal(Text(said), Text(refused));
    }

    [Fact]
    public async Task Tool_calls_come_back_as_function_call_items_and_their_outputs_continue_the_state()
    {
        var client = await server.ReadyClientAsync();
        var tools = new object[]
        {
            new
            {
                type = "function", name = "get_weather", description = "Weather in a city", strict = true,
                parameters = new { type = "object", properties = new { city = new { type = "string", maxLength = 12 } }, required = new[] { "city" }, additionalProperties = false },
            },
        };
        var called = await Create(client, new { input = "Weather in Rome?", tools, tool_choice = "required", max_output_tokens = 200, seed = 2 });
        var call = called.GetProperty("output")[0];
        Assert.Equal("function_call", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("name").GetString());
        using var args = JsonDocument.Parse(call.GetProperty("arguments").GetString()!);
        Assert.Equal(JsonValueKind.String, args.RootElement.GetProperty("city").ValueKind);

        var answered = await Create(client, new
        {
            input = new object[] { new { type = "function_call_output", call_id = call.GetProperty("call_id").GetString(), output = "{\"temp\":25}" } },
            previous_response_id = Id(called), tools, max_output_tokens = 4, seed = 3,
        });
        Assert.Equal(Fed(called), Cached(answered));
    }

    [Fact]
    public async Task Streamed_function_calls_come_as_item_and_argument_events_equal_to_the_plain_answer()
    {
        var client = await server.ReadyClientAsync();
        var tools = new object[]
        {
            new
            {
                type = "function", name = "get_weather",
                parameters = new { type = "object", properties = new { city = new { type = "string", maxLength = 40 } }, required = new[] { "city" }, additionalProperties = false },
            },
        };
        var plain = await Create(client, new { input = "Weather in Rome?", tools, tool_choice = "required", max_output_tokens = 200, seed = 5 });
        var call = plain.GetProperty("output")[0];

        var r = await client.PostAsync("/v1/responses", JsonBody(JsonSerializer.Serialize(new { input = "Weather in Rome?", tools, tool_choice = "required", max_output_tokens = 200, seed = 5, stream = true })));
        var events = (await r.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ")).Select(l => JsonDocument.Parse(l[6..]).RootElement).ToList();
        var types = events.Select(e => e.GetProperty("type").GetString()).ToList();
        int added = types.IndexOf("response.output_item.added");
        Assert.Equal("function_call", events[added].GetProperty("item").GetProperty("type").GetString());
        Assert.Equal("get_weather", events[added].GetProperty("item").GetProperty("name").GetString());
        // As many call items as the plain answer has; the first call's argument pieces add up to its
        // arguments. (Both answers in the message: this once failed, 2 items against 3, in one CI
        // run of many and never again, so a failure must say what the two answers were.)
        Assert.True(plain.GetProperty("output").GetArrayLength() == types.Count(t => t == "response.output_item.added"),
            $"plain: {plain.GetProperty("output")}\nstreamed: {(types[^1] == "response.completed" || types[^1] == "response.incomplete" ? events[^1].GetProperty("response").GetProperty("output").ToString() : string.Join(' ', types))}");
        var itemId = events[added].GetProperty("item").GetProperty("id").GetString();
        var mine = events.Where(e => e.TryGetProperty("item_id", out var id) && id.GetString() == itemId).ToList();
        var deltas = string.Concat(mine.Where(e => e.GetProperty("type").GetString() == "response.function_call_arguments.delta").Select(e => e.GetProperty("delta").GetString()));
        Assert.Equal(call.GetProperty("arguments").GetString(), deltas);
        var done = mine.Single(e => e.GetProperty("type").GetString() == "response.function_call_arguments.done");
        Assert.Equal(deltas, done.GetProperty("arguments").GetString());
        Assert.True(types.IndexOf("response.output_item.done") > types.IndexOf("response.function_call_arguments.done"));
        Assert.Equal("response.completed", types[^1]);
        Assert.DoesNotContain("response.output_text.delta", types);
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.GetProperty("sequence_number").GetInt32()));
    }

    [Fact]
    public async Task A_json_schema_format_gives_output_text_that_parses()
    {
        var client = await server.ReadyClientAsync();
        var r = await Create(client, new
        {
            input = "Describe a city.", max_output_tokens = 200, seed = 6,
            text = new { format = new { type = "json_schema", name = "city", strict = true,
                schema = new { type = "object", properties = new { city = new { type = "string", maxLength = 12 }, capital = new { type = "boolean" } }, required = new[] { "city", "capital" }, additionalProperties = false } } },
        });
        Assert.Equal("completed", r.GetProperty("status").GetString());
        using var parsed = JsonDocument.Parse(Text(r));
        Assert.Equal(JsonValueKind.String, parsed.RootElement.GetProperty("city").ValueKind);
        Assert.Equal("json_schema", r.GetProperty("text").GetProperty("format").GetProperty("type").GetString());
    }
}
