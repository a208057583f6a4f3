using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>vLLM's priority field and OpenAI's service_tier through HTTP: with one running place, a
/// queued request of lower priority number (or of the priority tier) is answered before those that
/// came earlier, a flex one after them.</summary>
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
        async Task Send(string name, int? priority, string? tier = null)
        {
            var body = JsonSerializer.Serialize(new { prompt = name, max_tokens = 150, ignore_eos = true, priority, service_tier = tier });
            var r = await client.PostAsync("/v1/completions", JsonBody(body));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            lock (finished) finished.Add(name);
        }
        var late = new List<Task> { Send("first", null) };
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 1);
        late.Add(Send("flex", null, "flex"));
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 2);
        late.Add(Send("tier", null, "priority"));
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 3);
        late.Add(Send("urgent", -5, "flex"));   // an explicit priority wins over the tier
        await WaitFor(client, s => s.GetProperty("queued_requests").GetInt32() == 4);

        hold.Cancel();   // the client leaves: its place frees, one queued request at a time from here
        held.Dispose();
        await Task.WhenAll(late);
        Assert.Equal(["urgent", "tier", "first", "flex"], finished);

        var bad = await client.PostAsync("/v1/completions", JsonBody("""{"prompt":"x","priority":"high"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("priority", (await ReadJson(bad)).GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task The_answer_reports_its_service_tier_and_an_unknown_one_is_named()
    {
        await using var server = new ServerFactory();
        var client = await server.ReadyClientAsync();
        async Task<string> Tier(string path, string body, string field = "service_tier")
        {
            var r = await client.PostAsync(path, JsonBody(body));
            var text = await r.Content.ReadAsStringAsync();
            Assert.True(r.IsSuccessStatusCode, text);
            if (text.StartsWith("data: ")) text = text.Split("\n\n")[0][6..];   // the first chunk
            return JsonDocument.Parse(text).RootElement.GetProperty(field).GetString()!;
        }
        Assert.Equal("default", await Tier("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"""));
        Assert.Equal("flex", await Tier("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"service_tier":"flex"}"""));
        Assert.Equal("priority", await Tier("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"service_tier":"priority","stream":true}"""));
        Assert.Equal("default", await Tier("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"service_tier":"auto"}"""));
        Assert.Equal("flex", await Tier("/v1/responses", """{"input":"hi","max_output_tokens":2,"service_tier":"flex"}"""));
        foreach (var (path, body) in new[]
        {
            ("/v1/chat/completions", """{"messages":[{"role":"user","content":"hi"}],"service_tier":"gold"}"""),
            ("/v1/responses", """{"input":"hi","service_tier":"gold"}"""),
            ("/v1/completions", """{"prompt":"hi","service_tier":"gold"}"""),
        })
        {
            var r = await client.PostAsync(path, JsonBody(body));
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal("service_tier", (await ReadJson(r)).GetProperty("error").GetProperty("param").GetString());
        }
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
