using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>Tool calls on the demo model: constrained to the offered functions and their schemas.</summary>
public class ToolCallingTests(DemoServer server) : IClassFixture<DemoServer>
{
    const string WeatherParameters = """{"type":"object","properties":{"city":{"type":"string","maxLength":16},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";
    const string TimeParameters = """{"type":"object","properties":{"zone":{"type":"string","maxLength":8}},"required":["zone"],"additionalProperties":false}""";

    static JsonArray Tools() => new(
        new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather", ["description"] = "Weather in a city", ["parameters"] = JsonNode.Parse(WeatherParameters), ["strict"] = true } },
        new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_time", ["parameters"] = JsonNode.Parse(TimeParameters) } },
        new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "ping" } });

    static JsonObject Request(JsonNode? toolChoice, int seed, bool stream = false, bool? parallel = null)
    {
        var r = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "system", ["content"] = "Use the tools." }, new JsonObject { ["role"] = "user", ["content"] = "What's the weather in Oslo?" }),
            ["tools"] = Tools(), ["max_tokens"] = 400, ["seed"] = seed, ["temperature"] = 0.9, ["stream"] = stream,
        };
        if (toolChoice is not null) r["tool_choice"] = toolChoice;
        if (parallel is not null) r["parallel_tool_calls"] = parallel;
        return r;
    }

    static void AssertArgumentsValid(string name, string arguments)
    {
        var schema = name switch { "get_weather" => WeatherParameters, "get_time" => TimeParameters, "ping" => """{"type":"object","maxProperties":0}""", _ => throw new Xunit.Sdk.XunitException($"unknown function {name}") };
        var result = JsonSchema.FromText(schema).Evaluate(JsonDocument.Parse(arguments).RootElement);
        Assert.True(result.IsValid, $"{name}({arguments})");
    }

    async Task<JsonElement> Post(JsonObject body)
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(body.ToJsonString()));
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement;
    }

    [Fact]
    public async Task Required_gives_calls_to_offered_functions_with_valid_arguments()
    {
        for (int seed = 0; seed < 6; seed++)
        {
            var choice = (await Post(Request("required", seed))).GetProperty("choices")[0];
            Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
            var message = choice.GetProperty("message");
            Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
            var calls = message.GetProperty("tool_calls").EnumerateArray().ToList();
            Assert.InRange(calls.Count, 1, 8);
            foreach (var call in calls)
            {
                Assert.StartsWith("call_", call.GetProperty("id").GetString());
                Assert.Equal("function", call.GetProperty("type").GetString());
                AssertArgumentsValid(call.GetProperty("function").GetProperty("name").GetString()!, call.GetProperty("function").GetProperty("arguments").GetString()!);
            }
        }
    }

    [Fact]
    public async Task A_named_choice_calls_that_function_and_parallel_false_makes_one_call()
    {
        var named = JsonNode.Parse("""{"type":"function","function":{"name":"get_time"}}""");
        for (int seed = 0; seed < 4; seed++)
        {
            var calls = (await Post(Request(named!.DeepClone(), seed, parallel: false))).GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls");
            Assert.Equal(1, calls.GetArrayLength());
            Assert.Equal("get_time", calls[0].GetProperty("function").GetProperty("name").GetString());
        }
        // The legacy functions/function_call map onto the same thing.
        var legacy = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "time?" }),
            ["functions"] = new JsonArray(new JsonObject { ["name"] = "get_time", ["parameters"] = JsonNode.Parse(TimeParameters) }),
            ["function_call"] = new JsonObject { ["name"] = "get_time" }, ["max_tokens"] = 200, ["seed"] = 1,
        };
        var call = (await Post(legacy)).GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls")[0];
        Assert.Equal("get_time", call.GetProperty("function").GetProperty("name").GetString());
    }

    [Fact]
    public async Task Streamed_calls_carry_id_and_name_once_and_arguments_in_pieces_equal_to_the_plain_answer()
    {
        var plain = (await Post(Request("required", 3))).GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls");
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(Request("required", 3, stream: true).ToJsonString()));
        var chunks = (await r.Content.ReadAsStringAsync()).Split("\n\n").Where(e => e.StartsWith("data: {")).Select(e => JsonDocument.Parse(e[6..]).RootElement).ToList();
        var names = new Dictionary<int, string>();
        var args = new Dictionary<int, string>();
        var ids = new Dictionary<int, int>();
        string? finish = null;
        foreach (var c in chunks)
            foreach (var choice in c.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = choice.GetProperty("finish_reason").GetString();
                if (!choice.GetProperty("delta").TryGetProperty("tool_calls", out var deltas)) continue;
                foreach (var d in deltas.EnumerateArray())
                {
                    int index = d.GetProperty("index").GetInt32();
                    if (d.TryGetProperty("id", out _)) ids[index] = ids.GetValueOrDefault(index) + 1;
                    var fn = d.GetProperty("function");
                    if (fn.TryGetProperty("name", out var n)) names[index] = n.GetString()!;
                    if (fn.TryGetProperty("arguments", out var a)) args[index] = args.GetValueOrDefault(index, "") + a.GetString();
                }
            }
        Assert.Equal("tool_calls", finish);
        Assert.Equal(plain.GetArrayLength(), names.Count);
        for (int i = 0; i < plain.GetArrayLength(); i++)
        {
            Assert.Equal(1, ids[i]);
            Assert.Equal(plain[i].GetProperty("function").GetProperty("name").GetString(), names[i]);
            Assert.Equal(plain[i].GetProperty("function").GetProperty("arguments").GetString(), args[i]);
        }
        Assert.True(chunks.Count(c => c.GetProperty("choices").EnumerateArray().Any(ch => ch.GetProperty("delta").TryGetProperty("tool_calls", out var t) && t[0].GetProperty("function").TryGetProperty("arguments", out var a) && a.GetString()!.Length > 0)) >= 1);
    }

    [Theory]
    [InlineData("required")]
    [InlineData("auto")]
    [InlineData("none")]
    public async Task Streamed_logprobs_with_tools_are_every_token_of_the_plain_answer(string toolChoice)
    {
        // With tools a token's text may be held back until it is known to be a call or not; its
        // logprobs must still come, with the next piece (they were dropped when streaming).
        JsonObject Asking(bool stream)
        {
            var r = Request(toolChoice, 5, stream);
            r["logprobs"] = true; r["top_logprobs"] = 2; r["max_tokens"] = 60; r["n"] = 2;
            return r;
        }
        var plain = (await Post(Asking(stream: false))).GetProperty("choices");
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(Asking(stream: true).ToJsonString()));
        var chunks = (await r.Content.ReadAsStringAsync()).Split("\n\n").Where(e => e.StartsWith("data: {")).Select(e => JsonDocument.Parse(e[6..]).RootElement).ToList();
        for (int i = 0; i < 2; i++)
        {
            var expected = plain[i].GetProperty("logprobs").GetProperty("content").EnumerateArray()
                .Select(t => (t.GetProperty("token").GetString(), t.GetProperty("logprob").GetSingle())).ToList();
            Assert.NotEmpty(expected);
            var streamed = chunks.SelectMany(c => c.GetProperty("choices").EnumerateArray())
                .Where(ch => ch.GetProperty("index").GetInt32() == i && ch.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.Object)
                .SelectMany(ch => ch.GetProperty("logprobs").GetProperty("content").EnumerateArray())
                .Select(t => (t.GetProperty("token").GetString(), t.GetProperty("logprob").GetSingle())).ToList();
            Assert.Equal(expected, streamed);
        }
    }

    [Fact]
    public async Task A_round_trip_call_result_answer_continues_the_parked_state()
    {
        var first = await Post(Request("required", 8));
        var message = first.GetProperty("choices")[0].GetProperty("message");
        var call = message.GetProperty("tool_calls")[0];
        var follow = Request("auto", 9);
        var messages = follow["messages"]!.AsArray();
        messages.Add(JsonNode.Parse(message.GetRawText()));
        foreach (var c in message.GetProperty("tool_calls").EnumerateArray())
            messages.Add(new JsonObject { ["role"] = "tool", ["tool_call_id"] = c.GetProperty("id").GetString(), ["content"] = "{\"temp\":21}" });
        follow["max_tokens"] = 20;
        var second = await Post(follow);
        int cached = second.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
        int firstPrompt = first.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.True(cached > firstPrompt, $"cached {cached} tokens; the first prompt alone had {firstPrompt}");
        Assert.NotNull(call.GetProperty("function").GetProperty("name").GetString());
    }

    [Fact]
    public async Task Too_many_tools_is_400()
    {
        var client = await server.ReadyClientAsync();
        var tools = new JsonArray();
        for (int i = 0; i < 129; i++) tools.Add(new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = $"f{i}" } });
        var body = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }), ["tools"] = tools };
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(body.ToJsonString()));
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal("tools", (await ReadJson(r)).GetProperty("error").GetProperty("param").GetString());
    }
}
