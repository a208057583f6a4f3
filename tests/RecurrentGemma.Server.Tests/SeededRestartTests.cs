using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// A seeded sampled request gives the same text alone, in a batch of 8 mixed greedy and sampled
/// requests, and from a restarted server process: its random numbers depend only on its seed and
/// how many tokens it has drawn (issue #9's "done when").
/// </summary>
public class SeededRestartTests
{
    const string Seeded = """{"messages":[{"role":"user","content":"tell me a story"}],"temperature":1,"seed":4242,"max_tokens":24,"logit_bias":{"1":-100,"107":-100}}""";

    static async Task<string> Chat(ServerProcess server, string body)
    {
        var response = await server.Http.PostAsync("/v1/chat/completions", JsonBody(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    [Fact]
    public async Task The_same_seed_gives_the_same_text_alone_in_a_mixed_batch_and_after_a_restart()
    {
        if (!OperatingSystem.IsLinux()) return;
        string alone;
        await using (var first = await ServerProcess.StartAsync("--Engine:MaxSlots=16 --Api:ShutdownGraceSeconds=1"))
        {
            alone = await Chat(first, Seeded);
            Assert.False(string.IsNullOrEmpty(alone));
            var batch = Enumerable.Range(0, 7).Select(i => i % 2 == 0
                ? $$"""{"messages":[{"role":"user","content":"greedy {{i}}"}],"temperature":0,"max_tokens":24}"""
                : $$"""{"messages":[{"role":"user","content":"sampled {{i}}"}],"temperature":0.8,"top_p":0.9,"seed":{{i}},"max_tokens":24}""").ToList();
            batch.Insert(4, Seeded);
            var texts = await Task.WhenAll(batch.Select(body => Chat(first, body)));
            Assert.Equal(alone, texts[4]);
            Assert.NotEqual(alone, await Chat(first, Seeded.Replace("4242", "4243")));   // the seed matters
        }
        await using var restarted = await ServerProcess.StartAsync("--Engine:MaxSlots=16 --Api:ShutdownGraceSeconds=1");
        Assert.Equal(alone, await Chat(restarted, Seeded));
    }
}
