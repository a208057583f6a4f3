using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>Two servers share a real Redis: a conversation begun on one continues on the other.</summary>
public class RedisSessionTests
{
    static int Cached(JsonElement r) => r.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
    static string Text(JsonElement r) => r.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;

    [Fact]
    public async Task A_conversation_begun_on_one_replica_continues_on_another_and_a_lost_redis_means_prefill()
    {
        using var redis = new RedisServer();
        await using var a = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        await using var b = new ServerFactory().With("Sessions:Store", "redis").With("Sessions:Redis", redis.ConnectionString);
        var clientA = await a.ReadyClientAsync();
        var clientB = await b.ReadyClientAsync();

        object[] turn1 = [new { role = "user", content = "Tell me about rivers." }];
        var first = await GreedyChat(clientA, turn1, "shared");
        object[] turn2 = [.. turn1, new { role = "assistant", content = Text(first) }, new { role = "user", content = "And lakes?" }];
        // The newest state is written in the background as it is parked: wait for it to land.
        using (var probe = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
        {
            var server = probe.GetServer(probe.GetEndPoints()[0]);
            for (int i = 0; i < 100 && !server.Keys(pattern: "rg:state:*").Any(); i++) await Task.Delay(50);
            Assert.True(server.Keys(pattern: "rg:state:*").Any(), "nothing was written to Redis");
        }
        var onB = await GreedyChat(clientB, turn2, "shared");
        Assert.True(Cached(onB) > 0, "replica B did not continue the state replica A stored");

        await using var fresh = new ServerFactory().With("Engine:ParkFinishedStates", "false");
        Assert.Equal(Text(await GreedyChat(await fresh.ReadyClientAsync(), turn2, null)), Text(onB));

        // Redis goes away: the next turn on B still answers (a plain prefill), nothing crashes.
        redis.Stop();
        object[] turn3 = [.. turn2, new { role = "assistant", content = Text(onB) }, new { role = "user", content = "And seas?" }];
        var afterLoss = await GreedyChat(clientB, turn3, "elsewhere");
        Assert.Equal(0, Cached(afterLoss));
    }
}
