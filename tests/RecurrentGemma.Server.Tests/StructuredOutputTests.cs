using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Xunit.Abstractions;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// Structured outputs on the demo model: its random weights want to write garbage, the grammar
/// must not let them. Every answer parses and validates (JsonSchema.Net, formats asserted).
/// </summary>
public class StructuredOutputTests(DemoServer server, ITestOutputHelper output) : IClassFixture<DemoServer>
{
    /// <summary>A random schema whose documents are bounded (strings, arrays and numbers have
    /// limits), so a random model always reaches the end within max_tokens.</summary>
    static JsonObject RandomSchema(Random r, int depth = 0)
    {
        int kind = r.Next(depth >= 2 ? 8 : 11);
        return kind switch
        {
            0 => new() { ["type"] = "string", ["maxLength"] = r.Next(0, 12), ["minLength"] = 0 },
            1 when r.Next(3) == 0 => new() { ["type"] = "integer", ["multipleOf"] = new[] { 2, 5, 7, 25, 1000 }[r.Next(5)], ["minimum"] = -r.Next(0, 50) },
            1 => new() { ["type"] = "integer", ["minimum"] = -r.Next(0, 50), ["maximum"] = r.Next(0, 5000) },
            2 => new() { ["type"] = "boolean" },
            3 => new() { ["type"] = "null" },
            4 => new() { ["enum"] = new JsonArray("red", 7, null, "blue sky", true) },
            5 => new() { ["type"] = "string", ["format"] = new[] { "date", "date-time", "uuid", "email", "time", "uri", "ipv4", "hostname" }[r.Next(8)] },
            6 when r.Next(4) == 0 => new() { ["type"] = "number", ["multipleOf"] = 0.01, ["minimum"] = 0, ["maximum"] = r.Next(1, 1000) },
            6 when r.Next(4) == 0 => new() { ["type"] = "number", ["multipleOf"] = new[] { 0.5, 0.25, 0.125, 2.5 }[r.Next(4)], ["minimum"] = -r.Next(0, 30) / 10.0, ["maximum"] = r.Next(1, 400) / 4.0 },
            6 when r.Next(2) == 0 => new() { ["type"] = "number" },
            6 => new() { ["type"] = "number", [r.Next(2) == 0 ? "minimum" : "exclusiveMinimum"] = -r.Next(0, 30) / 10.0, [r.Next(2) == 0 ? "maximum" : "exclusiveMaximum"] = r.Next(1, 40) / 8.0 },
            7 when r.Next(2) == 0 => new() { ["const"] = "fixed-" + r.Next(100) },
            7 => new() { ["type"] = "string", ["pattern"] = new[] { "^[a-z]{1,6}-\\d{1,3}$", "^(yes|no|maybe)$", "^[A-Z][a-z]{0,5}( [A-Z][a-z]{0,5})?$" }[r.Next(3)] },
            8 => new() { ["type"] = "array", ["items"] = RandomSchema(r, depth + 1), ["minItems"] = r.Next(0, 2), ["maxItems"] = r.Next(2, 4) },
            9 => new() { ["anyOf"] = new JsonArray(RandomSchema(r, depth + 1), RandomSchema(r, depth + 1)) },
            _ => RandomObject(r, depth + 1),
        };
    }

    static JsonObject RandomObject(Random r, int depth)
    {
        var props = new JsonObject();
        var required = new JsonArray();
        int n = 1 + r.Next(4);
        for (int i = 0; i < n; i++)
        {
            var name = $"f{i}_{(char)('a' + r.Next(26))}";
            props[name] = RandomSchema(r, depth);
            if (r.Next(3) > 0) required.Add(name);
        }
        var o = new JsonObject { ["type"] = "object", ["properties"] = props, ["required"] = required, ["additionalProperties"] = false };
        if (r.Next(3) == 0)
        {
            // Property counts that some subset meets: min ≤ listed, max ≥ required and ≥ min.
            int min = r.Next(n + 1), max = Math.Max(required.Count, min) + r.Next(n - Math.Max(required.Count, min) + 1);
            o["minProperties"] = min;
            o["maxProperties"] = max;
        }
        return o;
    }

    static void AssertValid(string schemaText, string json)
    {
        var schema = JsonSchema.FromText(schemaText);
        var result = schema.Evaluate(JsonDocument.Parse(json).RootElement, new EvaluationOptions { RequireFormatValidation = true, OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"not valid against {schemaText}:\n{json}\n" +
            string.Join("\n", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}"))));
    }

    [Fact]
    public async Task Random_schemas_seeds_and_temperatures_always_give_valid_documents()
    {
        var client = await server.ReadyClientAsync();
        var r = new Random(20261202);
        int documents = 0;
        for (int i = 0; i < 30; i++)
        {
            var schema = RandomObject(r, 0);
            var schemaText = schema.ToJsonString();
            double temperature = new[] { 0.0, 0.7, 1.3 }[i % 3];
            var body = new JsonObject
            {
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Fill in the form." }),
                ["response_format"] = new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["name"] = "form", ["schema"] = JsonNode.Parse(schemaText)!, ["strict"] = i % 2 == 0 } },
                ["temperature"] = temperature, ["seed"] = i, ["max_tokens"] = 1500, ["n"] = 1 + i % 2,
                ["stop"] = new JsonArray("}", "\""),   // stop strings never cut a constrained answer
            };
            var res = await client.PostAsync("/v1/chat/completions", JsonBody(body.ToJsonString()));
            var text = await res.Content.ReadAsStringAsync();
            Assert.True(res.StatusCode == HttpStatusCode.OK, text);
            foreach (var choice in JsonDocument.Parse(text).RootElement.GetProperty("choices").EnumerateArray())
            {
                var content = choice.GetProperty("message").GetProperty("content").GetString()!;
                Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
                AssertValid(schemaText, content);
                documents++;
                if (i < 3) output.WriteLine(content);
            }
        }
        Assert.True(documents >= 45);
    }

    [Fact]
    public async Task Json_object_mode_gives_one_object_and_streams_the_same_way()
    {
        var client = await server.ReadyClientAsync();
        var plain = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"json please"}],"response_format":{"type":"json_object"},"max_tokens":300,"temperature":0.8,"seed":3}"""));
        var raw = await plain.Content.ReadAsStringAsync();
        Assert.True(plain.StatusCode == HttpStatusCode.OK, raw);
        var choice = JsonDocument.Parse(raw).RootElement.GetProperty("choices")[0];
        var content = choice.GetProperty("message").GetProperty("content").GetString()!;
        if (choice.GetProperty("finish_reason").GetString() == "stop")
            Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(content).RootElement.ValueKind);
        else Assert.StartsWith("{", content);   // max_tokens wins: truncated, as OpenAI does

        var streamed = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"json please"}],"response_format":{"type":"json_object"},"max_tokens":300,"temperature":0.8,"seed":3,"stream":true}"""));
        var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n").Where(e => e.StartsWith("data: {")).Select(e => JsonDocument.Parse(e[6..]).RootElement).ToList();
        var text = string.Concat(events.Select(e => e.GetProperty("choices").EnumerateArray().FirstOrDefault() is { ValueKind: JsonValueKind.Object } c
            && c.GetProperty("delta").TryGetProperty("content", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : ""));
        Assert.Equal(content, text);   // same seed: the stream carries the same document
    }

    [Fact]
    public async Task Completions_take_response_format_as_an_extension_and_max_tokens_still_truncates()
    {
        var client = await server.ReadyClientAsync();
        const string schema = """{"type":"object","properties":{"city":{"type":"string","maxLength":8},"pop":{"type":"integer","minimum":0,"maximum":99999}},"required":["city","pop"],"additionalProperties":false}""";
        var res = await client.PostAsync("/v1/completions", JsonBody("""{"prompt":"City:","max_tokens":400,"temperature":1.0,"seed":5,"response_format":{"type":"json_schema","json_schema":{"name":"c","schema":""" + schema + "}}}"));
        var choice = (await ReadJson(res)).GetProperty("choices")[0];
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        AssertValid(schema, choice.GetProperty("text").GetString()!);

        var cut = await client.PostAsync("/v1/completions", JsonBody("""{"prompt":"City:","max_tokens":3,"seed":5,"response_format":{"type":"json_schema","json_schema":{"name":"c","schema":""" + schema + "}}}"));
        var truncated = (await ReadJson(cut)).GetProperty("choices")[0];
        Assert.Equal("length", truncated.GetProperty("finish_reason").GetString());
        Assert.StartsWith("{\"", truncated.GetProperty("text").GetString());
    }
}
