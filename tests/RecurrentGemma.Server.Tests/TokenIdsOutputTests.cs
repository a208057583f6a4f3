using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// vLLM's return_token_ids: the prompt's ids are what /tokenize gives for the same input (or the
/// ids sent), and each choice's ids are exactly what it sampled — they decode to its text.
/// </summary>
public class TokenIdsOutputTests(DemoServer server) : IClassFixture<DemoServer>
{
    static List<int> Ids(JsonElement e) => [.. e.EnumerateArray().Select(i => i.GetInt32())];

    async Task<JsonElement> Post(string path, object body)
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync(path, JsonBody(JsonSerializer.Serialize(body)));
        var json = await ReadJson(r);
        Assert.True(r.IsSuccessStatusCode, json.ToString());
        return json;
    }

    [Fact]
    public async Task Chat_returns_the_rendered_prompts_ids_and_each_choices_sampled_ids()
    {
        var messages = new object[] { new { role = "system", content = "Be terse." }, new { role = "user", content = "Name a colour, été 😀." } };
        var answer = await Post("/v1/chat/completions", new { messages, max_tokens = 12, n = 2, seed = 3, return_token_ids = true });
        var tokenized = await Post("/tokenize", new { messages });
        Assert.Equal(Ids(tokenized.GetProperty("tokens")), Ids(answer.GetProperty("prompt_token_ids")));
        foreach (var choice in answer.GetProperty("choices").EnumerateArray())
        {
            var ids = Ids(choice.GetProperty("token_ids"));
            Assert.NotEmpty(ids);
            var text = (await Post("/detokenize", new { tokens = ids })).GetProperty("prompt").GetString();
            Assert.Equal(choice.GetProperty("message").GetProperty("content").GetString(), text);
        }
        Assert.Equal(answer.GetProperty("usage").GetProperty("completion_tokens").GetInt32(),
            answer.GetProperty("choices").EnumerateArray().Sum(c => c.GetProperty("token_ids").GetArrayLength()));

        // Without the flag nothing changes.
        var plain = await Post("/v1/chat/completions", new { messages, max_tokens = 3 });
        Assert.False(plain.TryGetProperty("prompt_token_ids", out _));
        Assert.False(plain.GetProperty("choices")[0].TryGetProperty("token_ids", out _));
    }

    [Fact]
    public async Task Completions_return_each_prompts_ids_as_sent_on_its_choices()
    {
        int[] first = [2, 651, 1000, 7], second = [2, 300];
        var answer = await Post("/v1/completions", new { prompt = new[] { first, second }, max_tokens = 4, n = 2, temperature = 0, return_token_ids = true });
        var choices = answer.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal(4, choices.Count);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(i < 2 ? first : second, Ids(choices[i].GetProperty("prompt_token_ids")));
            Assert.Equal(4, choices[i].GetProperty("token_ids").GetArrayLength());
        }
        // Greedy: both choices of a prompt sampled the same ids.
        Assert.Equal(Ids(choices[0].GetProperty("token_ids")), Ids(choices[1].GetProperty("token_ids")));
    }
}
