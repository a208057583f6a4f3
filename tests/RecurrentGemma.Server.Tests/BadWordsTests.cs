using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>vLLM's bad_words: the ids of a banned word (alone or after a space) never appear in order.</summary>
public class BadWordsTests(DemoServer server) : IClassFixture<DemoServer>
{
    static bool Contains(IReadOnlyList<int> ids, IReadOnlyList<int> sequence) =>
        Enumerable.Range(0, ids.Count - sequence.Count + 1).Any(i => ids.Skip(i).Take(sequence.Count).SequenceEqual(sequence));

    [Fact]
    public async Task A_word_the_greedy_answer_wrote_is_never_written_once_banned()
    {
        var client = await server.ReadyClientAsync();
        async Task<JsonElement> Complete(string[]? badWords) => await ReadJson(await client.PostAsync("/v1/completions", JsonBody(JsonSerializer.Serialize(new
        {
            prompt = "The story begins", max_tokens = 16, temperature = 0, return_token_ids = true, bad_words = badWords,
        }))));
        var free = (await Complete(null)).GetProperty("choices")[0];
        var freeIds = free.GetProperty("token_ids").EnumerateArray().Select(i => i.GetInt32()).ToList();
        // Ban the text of the greedy answer's first token with visible text: the greedy answer can no longer be written.
        string word = "";
        foreach (var id in freeIds)
        {
            word = (await ReadJson(await client.PostAsync("/detokenize", JsonBody(JsonSerializer.Serialize(new { tokens = new[] { id } })))))
                .GetProperty("prompt").GetString()!.Trim();
            if (word.Length > 0) break;
        }
        Assert.NotEmpty(word);

        var banned = (await Complete([word])).GetProperty("choices")[0];
        var ids = banned.GetProperty("token_ids").EnumerateArray().Select(i => i.GetInt32()).ToList();
        Assert.NotEqual(freeIds, ids);
        foreach (var form in new[] { word, " " + word })
        {
            var sequence = (await ReadJson(await client.PostAsync("/tokenize", JsonBody(JsonSerializer.Serialize(new { prompt = form, add_special_tokens = false })))))
                .GetProperty("tokens").EnumerateArray().Select(i => i.GetInt32()).ToList();
            Assert.False(Contains(ids, sequence), $"'{form}' ({string.Join(",", sequence)}) in {string.Join(",", ids)}");
        }
    }

    [Theory]
    [InlineData("""{"prompt":"x","bad_words":[""]}""", "bad_words[0]")]
    [InlineData("""{"prompt":"x","bad_words":["a"],"allowed_token_ids":[5]}""", "bad_words")]
    [InlineData("""{"prompt":"x","bad_words":["a"],"min_tokens":1}""", "bad_words")]
    [InlineData("""{"prompt":"x","bad_words":"a"}""", "bad_words")]
    public async Task Bad_lists_and_combinations_are_named(string body, string param)
        => await AssertRefusedAsync(await server.ReadyClientAsync(), "/v1/completions", body, param);
}
