using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>vLLM's allowed_token_ids: only the listed ids are ever sampled.</summary>
public class AllowedTokenIdsTests(DemoServer server) : IClassFixture<DemoServer>
{
    [Fact]
    public async Task Only_the_listed_ids_are_sampled_and_the_answer_runs_to_its_limit_without_an_end_id()
    {
        var client = await server.ReadyClientAsync();
        int[] allowed = [300, 301, 302, 450, 451, 2000];
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions" })
        {
            var body = JsonSerializer.Serialize(new
            {
                messages = new[] { new { role = "user", content = "Pick." } }, prompt = "Pick.", max_tokens = 12, n = 4, temperature = 1.5, seed = 3,
                allowed_token_ids = allowed, return_token_ids = true,
            });
            var answer = await ReadJson(await client.PostAsync(path, JsonBody(body)));
            foreach (var choice in answer.GetProperty("choices").EnumerateArray())
            {
                var ids = choice.GetProperty("token_ids").EnumerateArray().Select(i => i.GetInt32()).ToList();
                Assert.Equal(12, ids.Count);   // no end id is allowed, so each runs to max_tokens
                Assert.All(ids, id => Assert.Contains(id, allowed));
                Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
            }
        }
    }

    [Theory]
    [InlineData("""{"prompt":"x","allowed_token_ids":[5,99999]}""", "allowed_token_ids[1]")]
    [InlineData("""{"prompt":"x","allowed_token_ids":[]}""", "allowed_token_ids")]
    [InlineData("""{"prompt":"x","allowed_token_ids":[5],"min_tokens":2}""", "allowed_token_ids")]
    [InlineData("""{"prompt":"x","allowed_token_ids":[5],"response_format":{"type":"json_object"}}""", "allowed_token_ids")]
    [InlineData("""{"prompt":"x","allowed_token_ids":"5"}""", "allowed_token_ids")]
    public async Task Bad_lists_and_combinations_are_named(string body, string param)
        => await AssertRefusedAsync(await server.ReadyClientAsync(), "/v1/completions", body, param);
}
