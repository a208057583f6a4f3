using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>vLLM's priority field through HTTP: with one running place, a queued request of lower
/// priority number is answered before those that came earlier.</summary>
public class PriorityEndpointTests
{
    [Fact]
    public async Task A_more_urgent_request_overtakes_the_queue_but_not_the_running_one()
    {
        await using var server = new ServerFactory().With("Engine:MaxRunningSequences", "1");
        var client = await server.ReadyClientAsync();
        using var hold = new CancellationTokenSource();
        var holding = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonBody("""{"prompt":"hold","max_tokens":4000,"ignore_eos":true,"stream":true}"""),
        };
        var held = await client.SendAsync(holding, HttpCompletionOption.ResponseHeadersRead, hold.Token);
        await WaitFor(client, s => s.GetProperty("running_sequences").GetInt32() == 1);

        var finished = new List<string>();
        async Task Send(string name, int? priority)
        {
            var body = JsonSerializer.Serialize(new { prompt = name, max_tokens = 150, ignore_eos = true, priority });
            var r = await client.PostAsync("/v1/completions", JsonBody(body));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            lock (finished) finished.Add(name);
        }
        var late = new List<Task> { Send("first", null) };
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 1);
        late.Add(Send("second", 3));
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 2);
        late.Add(Send("urgent", -5));
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 3);

        hold.Cancel();   // the client leaves: its place frees, one queued request at a time from here
        held.Dispose();
        await Task.WhenAll(late);
        Assert.Equal(["urgent", "first", "second"], finished);

        var bad = await client.PostAsync("/v1/completions", JsonBody("""{"prompt":"x","priority":"high"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("priority", (await ReadJson(bad)).GetProperty("error").GetProperty("param").GetString());
    }

    static async Task WaitFor(HttpClient client, Func<JsonElement, bool> condition)
    {
        for (int i = 0; i < 300; i++)
        {
            if (condition(await ReadJson(await client.GetAsync("/v1/engine/status")))) return;
            await Task.Delay(20);
        }
        throw new TimeoutException("the engine never reached the expected state");
    }
}
