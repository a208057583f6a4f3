using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ResponsesApiTests;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>POST /v1/responses/input_tokens counts exactly what the same POST /v1/responses reads
/// (usage.input_tokens), stores nothing, and names the field of a bad request.</summary>
public class InputTokensTests(DemoServer server) : IClassFixture<DemoServer>
{
    static readonly object Weather = new
    {
        type = "function", name = "get_weather", description = "The weather in a city.",
        parameters = new { type = "object", properties = new { city = new { type = "string" } }, required = new[] { "city" }, additionalProperties = false },
    };

    static async Task<int> Count(HttpClient client, object body)
    {
        var r = await client.PostAsync("/v1/responses/input_tokens", JsonBody(JsonSerializer.Serialize(body)));
        var json = await ReadJson(r);
        Assert.True(r.StatusCode == HttpStatusCode.OK, json.ToString());
        Assert.Equal("response.input_tokens", json.GetProperty("object").GetString());
        return json.GetProperty("input_tokens").GetInt32();
    }

    static int Used(JsonElement response) => response.GetProperty("usage").GetProperty("input_tokens").GetInt32();

    [Fact]
    public async Task The_count_equals_the_responses_input_tokens_for_every_kind_of_request()
    {
        var client = await server.ReadyClientAsync();
        var first = await Create(client, new { input = "Name a river.", instructions = "Be brief.", max_output_tokens = 4, temperature = 0 });
        var conversation = await ReadJson(await client.PostAsync("/v1/conversations", JsonBody("""{"items": [{"role": "user", "content": "We talk about lakes."}]}""")));
        string cid = conversation.GetProperty("id").GetString()!;
        await Create(client, new { input = "Which is deepest?", conversation = cid, max_output_tokens = 4, temperature = 0 });

        var requests = new Dictionary<string, object>
        {
            ["a string"] = new { input = "Hello there, how are you today?" },
            ["instructions and items"] = new
            {
                input = new object[] { new { role = "developer", content = "Answer in French." }, new { role = "user", content = new[] { new { type = "input_text", text = "Bonjour" } } } },
                instructions = "Be brief.",
            },
            ["tools"] = new { input = "What is the weather in Oslo?", tools = new[] { Weather } },
            ["a function call and its output"] = new
            {
                input = new object[]
                {
                    new { role = "user", content = "Weather in Oslo?" },
                    new { type = "function_call", call_id = "call_1", name = "get_weather", arguments = """{"city":"Oslo"}""" },
                    new { type = "function_call_output", call_id = "call_1", output = "Sunny, 20 C" },
                },
                tools = new[] { Weather },
            },
            ["a previous response"] = new { input = "And a lake?", instructions = "Be brief.", previous_response_id = first.GetProperty("id").GetString() },
            ["a conversation"] = new { input = "And the widest?", conversation = cid },
        };
        foreach (var (what, body) in requests)
        {
            int counted = await Count(client, body);
            // The same request, run (a copy of it, so the conversation gains nothing before it is counted).
            var asRun = JsonSerializer.SerializeToNode(body)!.AsObject();
            asRun["max_output_tokens"] = 1;
            asRun["store"] = false;
            int used = Used(await Create(client, asRun));
            Assert.True(counted == used, $"{what}: counted {counted}, the response read {used}");
            if (what == "a conversation")
            {
                // Counting added nothing; the run just above added its input and answer.
                var items = await ReadJson(await client.GetAsync($"/v1/conversations/{cid}/items?limit=100"));
                Assert.Equal(1 + 2 + 2, items.GetProperty("data").GetArrayLength());
            }
        }
        // A conversation that ends with the user's turn needs no new input to be counted; it counts
        // as that turn sent as input does.
        var pending = await ReadJson(await client.PostAsync("/v1/conversations", JsonBody("""{"items": [{"role": "user", "content": "We talk about lakes."}]}""")));
        Assert.Equal(await Count(client, new { input = "We talk about lakes." }), await Count(client, new { conversation = pending.GetProperty("id").GetString() }));
        // One that ends with an answer is no request the model could answer: refused as the response would be.
        await AssertRefusedAsync(client, "/v1/responses/input_tokens", JsonSerializer.Serialize(new { conversation = cid }), "input");
    }

    [Fact]
    public async Task Bad_requests_name_their_field()
    {
        var client = await server.ReadyClientAsync();
        await AssertRefusedAsync(client, "/v1/responses/input_tokens", "{}", "input");
        await AssertRefusedAsync(client, "/v1/responses/input_tokens", """{"input": 5}""", "input");
        await AssertRefusedAsync(client, "/v1/responses/input_tokens", """{"input": "x", "tools": [{"type": "web_search"}]}""", "tools[0].type");
        await AssertRefusedAsync(client, "/v1/responses/input_tokens", """{"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}""", "input[0].content[0].type");
        foreach (var (body, param) in new[] { ("""{"input": "x", "previous_response_id": "resp_none"}""", "previous_response_id"), ("""{"input": "x", "conversation": "conv_none"}""", "conversation") })
        {
            var r = await client.PostAsync("/v1/responses/input_tokens", JsonBody(body));
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
            Assert.Equal(param, (await ReadJson(r)).GetProperty("error").GetProperty("param").GetString());
        }
    }
}
