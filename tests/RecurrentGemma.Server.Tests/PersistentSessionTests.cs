using System.Net;
using System.Text.Json;
using RecurrentGemma.Engine;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>With Sessions:Path, a conversation outlives the server: stop it, start another on the
/// same directory, and the next turn continues the stored state.</summary>
public sealed class PersistentSessionTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-sessions-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_conversation_continues_on_a_new_server_from_the_stored_state()
    {
        object[] turn1 = [new { role = "user", content = "Tell me about rivers." }];
        string answer;
        await using (var a = new ServerFactory().With("Sessions:Path", _dir))
        {
            var first = await GreedyChat(await a.ReadyClientAsync(), turn1, "trip");
            answer = first.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        }   // host stop: parked states are written out
        Assert.NotEmpty(Directory.GetFiles(_dir, "*.state"));

        object[] turn2 = [.. turn1, new { role = "assistant", content = answer }, new { role = "user", content = "And lakes?" }];
        await using var b = new ServerFactory().With("Sessions:Path", _dir);
        var clientB = await b.ReadyClientAsync();
        await ((EngineClient)b.Host.Inference!.Engine).StoreIndexed;
        var resumed = await GreedyChat(clientB, turn2, "trip");
        Assert.True(resumed.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() > 0);

        // The same tokens a fresh server gives for the whole conversation.
        await using var fresh = new ServerFactory().With("Engine:ParkFinishedStates", "false");
        var expected = await GreedyChat(await fresh.ReadyClientAsync(), turn2, null);
        Assert.Equal(expected.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            resumed.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }
}
