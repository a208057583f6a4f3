using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// Completions' best_of: best_of candidates are generated (seeded: the same candidates an n =
/// best_of request makes), the n with the highest log probability per token come back in that
/// order, usage counts every candidate, logprobs only when asked for; per prompt when there are several.
/// </summary>
public class BestOfTests(DemoServer server) : IClassFixture<DemoServer>
{
    static async Task<JsonElement> Complete(HttpClient client, string body)
    {
        var r = await client.PostAsync("/v1/completions", JsonBody(body));
        var json = await ReadJson(r);
        Assert.True(r.StatusCode == HttpStatusCode.OK, json.ToString());
        return json;
    }

    static double Mean(JsonElement choice) => choice.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Average(x => x.GetDouble());

    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 5)]
    public async Task The_n_candidates_with_the_highest_log_probability_per_token_come_back(int n, int bestOf)
    {
        var client = await server.ReadyClientAsync();
        const string Prompt = "\"prompt\": \"Once upon a time\", \"max_tokens\": 12, \"temperature\": 1.3, \"seed\": 99";
        // The candidates, all of them: n = best_of with logprobs.
        var all = await Complete(client, $$"""{{{Prompt}}, "n": {{bestOf}}, "logprobs": 0}""");
        var candidates = all.GetProperty("choices").EnumerateArray().OrderBy(c => c.GetProperty("index").GetInt32()).ToList();
        var expected = candidates.OrderByDescending(Mean).Take(n).Select(c => c.GetProperty("text").GetString()).ToList();
        Assert.True(candidates.Select(Mean).Distinct().Count() == bestOf, "the candidates should differ");

        var best = await Complete(client, $$"""{{{Prompt}}, "n": {{n}}, "best_of": {{bestOf}}}""");
        var choices = best.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal(Enumerable.Range(0, n), choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(expected, choices.Select(c => c.GetProperty("text").GetString()));
        Assert.All(choices, c => Assert.Equal(JsonValueKind.Null, c.GetProperty("logprobs").ValueKind));   // not asked for
        // Every candidate was generated, and is counted.
        Assert.Equal(all.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), best.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // Asked for: the picked candidates' own.
        var withLogprobs = await Complete(client, $$"""{{{Prompt}}, "n": {{n}}, "best_of": {{bestOf}}, "logprobs": 0}""");
        var picked = withLogprobs.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal(candidates.Select(Mean).OrderByDescending(m => m).Take(n), picked.Select(Mean));
    }

    [Fact]
    public async Task Each_prompt_gets_its_own_best()
    {
        var client = await server.ReadyClientAsync();
        var both = await Complete(client, """{"prompt": ["The sea", "A mountain"], "max_tokens": 8, "temperature": 1.3, "seed": 5, "best_of": 3}""");
        var choices = both.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1], choices.Select(c => c.GetProperty("index").GetInt32()));
        foreach (var (prompt, i) in new[] { ("The sea", 0), ("A mountain", 1) })
        {
            var alone = await Complete(client, $$"""{"prompt": "{{prompt}}", "max_tokens": 8, "temperature": 1.3, "seed": 5, "n": 3, "logprobs": 0}""");
            var best = alone.GetProperty("choices").EnumerateArray().OrderByDescending(Mean).First().GetProperty("text").GetString();
            Assert.Equal(best, choices[i].GetProperty("text").GetString());
        }
    }
}
