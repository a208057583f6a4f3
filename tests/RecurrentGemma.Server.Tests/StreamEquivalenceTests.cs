using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// Seeded random requests (greedy or seeded sampling; stop strings, n, penalties, logprobs, tools,
/// JSON schemas, several prompts) sent twice, plain and streamed: the stream put back together
/// must be the plain answer — each choice's text, finish reason, tool calls and logprob tokens,
/// and the usage. This found usage that counted tokens made after a stop string (how many
/// depended on timing) and logprobs lost when tools were offered and the answer streamed.
/// </summary>
public class StreamEquivalenceTests(DemoServer server, ITestOutputHelper output) : IClassFixture<DemoServer>
{
    const int Requests = 40;
    static readonly string[] Words = ["hello", "tell me", "a story", "{", "json", "the", "x y z", "été", "😀", "newline\nhere"];
    static readonly string[] Stops = ["\n", "e", " the", "a", ".", "}"];

    static JsonArray Tools() => JsonNode.Parse("""
        [{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":6}},"required":["city"]}}},
         {"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}}}]
        """)!.AsArray();

    static (string Path, JsonObject Body, int Choices) Draw(Random rng)
    {
        string Words3() => string.Join(' ', Enumerable.Range(0, 3).Select(_ => Words[rng.Next(Words.Length)]));
        var body = new JsonObject { ["max_tokens"] = rng.Next(1, 26), ["seed"] = rng.Next(1000) };
        body["temperature"] = rng.NextDouble() < 0.5 ? 0 : new[] { 0.5, 1, 1.5 }[rng.Next(3)];
        if (rng.NextDouble() < 0.35) body["stop"] = new JsonArray([.. Stops.OrderBy(_ => rng.Next()).Take(rng.Next(1, 4)).Select(s => (JsonNode)s)]);
        int n = rng.NextDouble() < 0.3 ? rng.Next(1, 4) : 1;
        body["n"] = n;
        if (rng.NextDouble() < 0.2) body["top_p"] = 0.9;
        if (rng.NextDouble() < 0.2) body["presence_penalty"] = 1.0;
        if (rng.NextDouble() < 0.5) body["return_token_ids"] = true;
        if (rng.NextDouble() < 0.6)
        {
            body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = Words3() });
            if (rng.NextDouble() < 0.4) { body["logprobs"] = true; body["top_logprobs"] = rng.Next(4); }
            double kind = rng.NextDouble();
            if (kind < 0.3)
            {
                body["tools"] = Tools();
                body["tool_choice"] = new JsonNode[] { "auto", "required", JsonNode.Parse("""{"type":"function","function":{"name":"add"}}""")! }[rng.Next(3)];
            }
            else if (kind < 0.45)
                body["response_format"] = JsonNode.Parse("""{"type":"json_schema","json_schema":{"name":"s","strict":true,"schema":{"type":"object","properties":{"w":{"type":"string","maxLength":5},"n":{"type":"integer"}},"required":["w","n"],"additionalProperties":false}}}""");
            return ("/v1/chat/completions", body, n);
        }
        int prompts = rng.Next(2) + 1;
        body["prompt"] = prompts == 1 ? Words3() : new JsonArray(Words3(), Words3());
        if (rng.NextDouble() < 0.3) body["logprobs"] = rng.Next(4);
        if (rng.NextDouble() < 0.2) body["echo"] = true;
        return ("/v1/completions", body, n * prompts);
    }

    sealed record Choice(string Text, string? Finish, List<string> Logprobs, List<string> Calls)
    {
        public List<int> TokenIds { get; init; } = [];
        public List<int> PromptIds { get; init; } = [];
    }

    static List<int> Ids(JsonElement e, string name) => e.TryGetProperty(name, out var ids) ? [.. ids.EnumerateArray().Select(i => i.GetInt32())] : [];

    static Choice Plain(JsonElement c, bool chat)
    {
        if (!chat)
            return new(c.GetProperty("text").GetString()!, c.GetProperty("finish_reason").GetString(),
                c.GetProperty("logprobs") is { ValueKind: JsonValueKind.Object } lp ? [.. lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!)] : [], [])
            { TokenIds = Ids(c, "token_ids"), PromptIds = Ids(c, "prompt_token_ids") };
        var m = c.GetProperty("message");
        var calls = m.TryGetProperty("tool_calls", out var tc) ? tc.EnumerateArray().Select(t => t.GetProperty("function").GetProperty("name").GetString() + t.GetProperty("function").GetProperty("arguments").GetString()).ToList() : [];
        var logprobs = c.GetProperty("logprobs") is { ValueKind: JsonValueKind.Object } l ? l.GetProperty("content").EnumerateArray().Select(t => t.GetProperty("token").GetString()!).ToList() : [];
        return new(m.GetProperty("content").GetString() ?? "", c.GetProperty("finish_reason").GetString(), logprobs, calls) { TokenIds = Ids(c, "token_ids") };
    }

    static (Dictionary<int, Choice>, JsonElement? Usage, List<int> PromptIds, List<int> Running) Streamed(string sse, bool chat)
    {
        var tokenIds = new Dictionary<int, List<int>>();
        var choicePromptIds = new Dictionary<int, List<int>>();
        var promptIds = new List<int>();
        var running = new List<int>();   // completion_tokens of every chunk's usage (continuous_usage_stats)
        var text = new Dictionary<int, StringBuilder>();
        var finish = new Dictionary<int, string?>();
        var logprobs = new Dictionary<int, List<string>>();
        var calls = new Dictionary<int, SortedDictionary<int, StringBuilder>>();
        JsonElement? usage = null;
        foreach (var line in sse.Split('\n').Where(l => l.StartsWith("data: {")))
        {
            var chunk = JsonDocument.Parse(line[6..]).RootElement;
            if (chunk.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
            {
                usage = u;
                if (chunk.GetProperty("choices").GetArrayLength() > 0) running.Add(u.GetProperty("completion_tokens").GetInt32());
            }
            promptIds.AddRange(Ids(chunk, "prompt_token_ids"));
            foreach (var c in chunk.GetProperty("choices").EnumerateArray())
            {
                int i = c.GetProperty("index").GetInt32();
                var t = text.TryGetValue(i, out var sb) ? sb : text[i] = new();
                var lps = logprobs.TryGetValue(i, out var l0) ? l0 : logprobs[i] = [];
                if (c.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String) finish[i] = f.GetString();
                bool hasLogprobs = c.TryGetProperty("logprobs", out var lp) && lp.ValueKind == JsonValueKind.Object;
                (tokenIds.TryGetValue(i, out var ti) ? ti : tokenIds[i] = []).AddRange(Ids(c, "token_ids"));
                (choicePromptIds.TryGetValue(i, out var cp) ? cp : choicePromptIds[i] = []).AddRange(Ids(c, "prompt_token_ids"));
                if (!chat)
                {
                    t.Append(c.GetProperty("text").GetString());
                    if (hasLogprobs) lps.AddRange(lp.GetProperty("tokens").EnumerateArray().Select(x => x.GetString()!));
                    continue;
                }
                var d = c.GetProperty("delta");
                if (d.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String) t.Append(content.GetString());
                if (d.TryGetProperty("tool_calls", out var tcs))
                    foreach (var tc in tcs.EnumerateArray())
                    {
                        var perChoice = calls.TryGetValue(i, out var pc) ? pc : calls[i] = [];
                        int k = tc.GetProperty("index").GetInt32();
                        var call = perChoice.TryGetValue(k, out var cb) ? cb : perChoice[k] = new();
                        var fn = tc.GetProperty("function");
                        if (fn.TryGetProperty("name", out var name)) call.Append(name.GetString());
                        if (fn.TryGetProperty("arguments", out var args)) call.Append(args.GetString());
                    }
                if (hasLogprobs) lps.AddRange(lp.GetProperty("content").EnumerateArray().Select(x => x.GetProperty("token").GetString()!));
            }
        }
        return (text.Keys.ToDictionary(i => i, i => new Choice(text[i].ToString(), finish.GetValueOrDefault(i), logprobs[i],
            calls.TryGetValue(i, out var c) ? c.Values.Select(b => b.ToString()).ToList() : []) { TokenIds = tokenIds[i], PromptIds = choicePromptIds[i] }), usage, promptIds, running);
    }

    [Fact]
    public async Task A_streamed_answer_put_back_together_is_the_plain_answer()
    {
        var client = await server.ReadyClientAsync();
        var rng = new Random(20261204);
        for (int r = 0; r < Requests; r++)
        {
            var (path, body, choices) = Draw(rng);
            bool chat = path.Contains("chat");
            var plainResponse = await client.PostAsync(path, JsonBody(body.ToJsonString()));
            var plainText = await plainResponse.Content.ReadAsStringAsync();
            body["stream"] = true;
            bool continuous = rng.NextDouble() < 0.5;
            body["stream_options"] = new JsonObject { ["include_usage"] = true, ["continuous_usage_stats"] = continuous };
            var streamResponse = await client.PostAsync(path, JsonBody(body.ToJsonString()));
            var streamText = await streamResponse.Content.ReadAsStringAsync();
            string what = $"request {r}: {body.ToJsonString()}";
            Assert.True(plainResponse.StatusCode == streamResponse.StatusCode, $"{what}\n{plainText}\n{streamText}");
            if (plainResponse.StatusCode != HttpStatusCode.OK) { output.WriteLine($"{what} -> {(int)plainResponse.StatusCode}"); continue; }

            var plain = JsonDocument.Parse(plainText).RootElement;
            var (streamed, usage, promptIds, running) = Streamed(streamText, chat);
            bool ids = body["return_token_ids"] is not null;
            int completionTokens = plain.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
            if (ids)
            {
                // Every counted token is in some choice's token_ids, and the prompts' ids are the prompt tokens.
                Assert.True(completionTokens == plain.GetProperty("choices").EnumerateArray().Sum(c => c.GetProperty("token_ids").GetArrayLength()), what);
                int promptTokens = plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
                if (chat) Assert.Equal(Ids(plain, "prompt_token_ids"), promptIds);
                else Assert.True(promptTokens == plain.GetProperty("choices").EnumerateArray().Where((_, i) => i % (choices / body["prompt"] switch { JsonArray a => a.Count, _ => 1 }) == 0)
                    .Sum(c => c.GetProperty("prompt_token_ids").GetArrayLength()), what);
                if (chat) Assert.True(promptTokens == promptIds.Count, what);
            }
            else Assert.DoesNotContain("token_ids", plainText + streamText);
            if (continuous)
            {
                Assert.NotEmpty(running);
                Assert.True(running.Zip(running.Skip(1)).All(p => p.First <= p.Second), $"{what}\nrunning {string.Join(",", running)}");
                Assert.True(running[^1] == completionTokens, $"{what}\nrunning {string.Join(",", running)} vs {completionTokens}");
            }
            else Assert.True(running.Count == 0, what);
            Assert.True(choices == plain.GetProperty("choices").GetArrayLength(), what);
            Assert.True(choices == streamed.Count, what);
            foreach (var c in plain.GetProperty("choices").EnumerateArray())
            {
                var expected = Plain(c, chat);
                var got = streamed[c.GetProperty("index").GetInt32()];
                Assert.True(expected.Text == got.Text, $"{what}\ntext {expected.Text} vs {got.Text}");
                Assert.True(expected.Finish == got.Finish, $"{what}\nfinish {expected.Finish} vs {got.Finish}");
                Assert.True(expected.Calls.SequenceEqual(got.Calls), $"{what}\ncalls {string.Join(",", expected.Calls)} vs {string.Join(",", got.Calls)}");
                Assert.True(expected.Logprobs.SequenceEqual(got.Logprobs), $"{what}\nlogprobs {expected.Logprobs.Count} vs {got.Logprobs.Count}");
                Assert.True(expected.TokenIds.SequenceEqual(got.TokenIds), $"{what}\ntoken_ids {string.Join(",", expected.TokenIds)} vs {string.Join(",", got.TokenIds)}");
                if (!chat) Assert.True(expected.PromptIds.SequenceEqual(got.PromptIds), $"{what}\nprompt_token_ids");
            }
            foreach (var field in new[] { "prompt_tokens", "completion_tokens", "total_tokens" })
                Assert.True(plain.GetProperty("usage").GetProperty(field).GetInt32() == usage!.Value.GetProperty(field).GetInt32(),
                    $"{what}\nusage {plain.GetProperty("usage")} vs {usage}");
        }
    }
}
