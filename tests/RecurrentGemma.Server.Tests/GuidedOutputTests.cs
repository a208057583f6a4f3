using System.Net;
using System.Text.Json;
using Json.Schema;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// vLLM's structured_outputs (json, choice, json_object) and its older guided_json/guided_choice,
/// on the demo model whose random weights would write anything: the answer is one of the choices,
/// or a document valid against the schema. Before, these fields were ignored (free text came back).
/// </summary>
public class GuidedOutputTests(DemoServer server) : IClassFixture<DemoServer>
{
    static readonly string[] Colours = ["red", "green", "deep blue", "ünïcode ✓"];

    async Task<JsonElement> Ask(string path, string extra, int n = 4)
    {
        var client = await server.ReadyClientAsync();
        string input = path == "/v1/completions" ? "\"prompt\":\"Pick one:\"" : "\"messages\":[{\"role\":\"user\",\"content\":\"Pick one\"}]";
        var r = await client.PostAsync(path, JsonBody($$"""{{{input}},"n":{{n}},"max_tokens":60,"temperature":1.5,"seed":11{{extra}}}"""));
        var body = await ReadJson(r);
        Assert.True(r.StatusCode == HttpStatusCode.OK, body.ToString());
        return body;
    }

    static IEnumerable<(string Text, string Finish)> Answers(JsonElement body) => body.GetProperty("choices").EnumerateArray().Select(c =>
        (c.TryGetProperty("text", out var t) ? t.GetString()! : c.GetProperty("message").GetProperty("content").GetString()!, c.GetProperty("finish_reason").GetString()!));

    [Theory]
    [InlineData("/v1/chat/completions", "guided_choice")]
    [InlineData("/v1/completions", "guided_choice")]
    [InlineData("/v1/chat/completions", "structured_outputs")]
    [InlineData("/v1/completions", "structured_outputs")]
    public async Task A_choice_answer_is_exactly_one_of_the_choices(string path, string field)
    {
        string choices = JsonSerializer.Serialize(Colours);
        var body = await Ask(path, field == "guided_choice" ? $",\"guided_choice\":{choices}" : $",\"structured_outputs\":{{\"choice\":{choices}}}");
        foreach (var (text, finish) in Answers(body))
        {
            Assert.Contains(text, Colours);
            Assert.Equal("stop", finish);
        }
    }

    [Theory]
    [InlineData("/v1/chat/completions", "guided_json", false)]
    [InlineData("/v1/chat/completions", "guided_json", true)]          // a string holding the schema, as vLLM also takes
    [InlineData("/v1/completions", "structured_outputs", false)]
    public async Task A_json_answer_is_valid_against_the_schema(string path, string field, bool asString)
    {
        const string schema = """{"type":"object","properties":{"name":{"type":"string","maxLength":8},"score":{"type":"number","minimum":0,"maximum":1},"tag":{"enum":["a","b"]}},"required":["name","score","tag"],"additionalProperties":false}""";
        string value = asString ? JsonSerializer.Serialize(schema) : schema;
        var body = await Ask(path, field == "guided_json" ? $",\"guided_json\":{value}" : $",\"structured_outputs\":{{\"json\":{value}}}");
        foreach (var (text, finish) in Answers(body))
        {
            Assert.Equal("stop", finish);
            var result = JsonSchema.FromText(schema).Evaluate(JsonDocument.Parse(text).RootElement);
            Assert.True(result.IsValid, text);
        }
    }

    [Theory]
    [InlineData("/v1/chat/completions", "guided_regex")]
    [InlineData("/v1/completions", "structured_outputs")]
    public async Task A_regex_answer_matches_the_whole_expression(string path, string field)
    {
        const string pattern = "(yes|no|maybe), [a-z]{2,6}( \"[0-9]{1,3}\")?";   // unanchored: vLLM matches the whole output anyway
        string value = JsonSerializer.Serialize(pattern);
        var body = await Ask(path, field == "guided_regex" ? $",\"guided_regex\":{value}" : $",\"structured_outputs\":{{\"regex\":{value}}}");
        foreach (var (text, finish) in Answers(body))
        {
            Assert.Equal("stop", finish);
            Assert.Matches($"^(?:{pattern})$", text);
        }
    }

    [Fact]
    public async Task Json_object_gives_one_object()
    {
        var body = await Ask("/v1/chat/completions", ",\"structured_outputs\":{\"json_object\":true},\"max_tokens\":200", n: 2);
        foreach (var (text, finish) in Answers(body))
            if (finish == "stop") Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);
    }

    [Theory]
    [InlineData(""","guided_regex":"(?=x)y" """, "guided_regex")]
    [InlineData(""","structured_outputs":{"regex":""}""", "structured_outputs.regex")]
    [InlineData(""","structured_outputs":{"grammar":"root ::= \"a\""}""", "structured_outputs.grammar")]
    [InlineData(""","guided_choice":[]""", "guided_choice")]
    [InlineData(""","structured_outputs":{"choice":["a",""]}""", "structured_outputs.choice[1]")]
    [InlineData(""","guided_json":"{not json" """, "guided_json")]
    [InlineData(""","guided_json":[1]""", "guided_json")]
    [InlineData(""","guided_json":{"type":"object","required":["x"]}""", "guided_json.required")]
    [InlineData(""","guided_choice":["a"],"response_format":{"type":"json_object"}""", "guided_choice")]
    [InlineData(""","structured_outputs":{"json":{"type":"string"},"choice":["a"]}""", "structured_outputs.choice")]
    [InlineData(""","guided_choice":["a"],"tools":[{"type":"function","function":{"name":"f"}}]""", "guided_choice")]
    public async Task What_cannot_be_served_is_a_400_naming_the_field(string extra, string param)
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody($$"""{"messages":[{"role":"user","content":"hi"}],"max_tokens":2{{extra}}}"""));
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.True(r.StatusCode == HttpStatusCode.BadRequest, error.ToString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }
}
