using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>The Responses API's stream byte for byte: event names, payloads, sequence numbers.</summary>
public class ResponsesStreamTests(DemoServer server) : IClassFixture<DemoServer>
{
    static string J(string s) => JsonSerializer.Serialize(s);

    [Fact]
    public async Task A_short_streamed_response_is_exactly_the_documented_event_sequence()
    {
        var client = await server.ReadyClientAsync();
        // The text deltas come from chat completions with the same prompt and greedy decoding:
        // the same tokens, detokenized the same way, so the same pieces.
        var chat = await client.PostAsync("/v1/chat/completions", JsonBody("""
            {"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}
            """));
        var deltas = new List<string>();
        string finish = "";
        int promptTokens = 0, completionTokens = 0;
        foreach (var line in (await chat.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {")))
        {
            var chunk = JsonDocument.Parse(line[6..]).RootElement;
            if (chunk.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
            {
                promptTokens = u.GetProperty("prompt_tokens").GetInt32();
                completionTokens = u.GetProperty("completion_tokens").GetInt32();
            }
            foreach (var c in chunk.GetProperty("choices").EnumerateArray())
            {
                if (c.GetProperty("delta").TryGetProperty("content", out var t) && t.GetString() is { Length: > 0 } piece) deltas.Add(piece);
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = c.GetProperty("finish_reason").GetString()!;
            }
        }
        Assert.NotEmpty(deltas);

        var response = await client.PostAsync("/v1/responses", JsonBody("""{"input":"Hi","max_output_tokens":3,"temperature":0,"stream":true}"""));
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var raw = await response.Content.ReadAsStringAsync();
        var normalized = Regex.Replace(raw, "(resp|msg)_[0-9a-f]{48}", "$1_X");
        normalized = Regex.Replace(normalized, "\"created_at\":\\d+", "\"created_at\":0");

        string text = string.Concat(deltas);
        bool complete = finish != "length";
        string status = complete ? "completed" : "incomplete";
        string Response(string state, string output, string outputText, string incomplete, string usage) =>
            "{\"id\":\"resp_X\",\"object\":\"response\",\"created_at\":0,\"status\":\"" + state + "\",\"error\":null,\"incomplete_details\":" + incomplete
            + ",\"instructions\":null,\"max_output_tokens\":3,\"model\":\"recurrentgemma-demo\",\"output\":" + output + ",\"output_text\":" + outputText
            + ",\"parallel_tool_calls\":true,\"previous_response_id\":null,\"store\":true,\"temperature\":0,\"top_p\":1,\"text\":{\"format\":{\"type\":\"text\"}}"
            + ",\"tool_choice\":\"auto\",\"tools\":[],\"truncation\":\"disabled\",\"usage\":" + usage + ",\"user\":null,\"metadata\":{},\"service_tier\":\"default\",\"background\":false}";
        string part = "{\"type\":\"output_text\",\"text\":" + J(text) + ",\"annotations\":[],\"logprobs\":[]}";
        string message = "{\"type\":\"message\",\"id\":\"msg_X\",\"status\":\"" + (complete ? "completed" : "incomplete") + "\",\"role\":\"assistant\",\"content\":[" + part + "]}";
        string usage = $"{{\"input_tokens\":{promptTokens},\"input_tokens_details\":{{\"cached_tokens\":0}},\"output_tokens\":{completionTokens},\"output_tokens_details\":{{\"reasoning_tokens\":0}},\"total_tokens\":{promptTokens + completionTokens}}}";
        string inProgress = Response("in_progress", "[]", "\"\"", "null", "null");

        var events = new List<(string Name, string Data)>
        {
            ("response.created", "{\"type\":\"response.created\",\"sequence_number\":0,\"response\":" + inProgress + "}"),
            ("response.in_progress", "{\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":" + inProgress + "}"),
            ("response.output_item.added", "{\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_X\",\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}}"),
            ("response.content_part.added", "{\"type\":\"response.content_part.added\",\"sequence_number\":3,\"output_index\":0,\"item_id\":\"msg_X\",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}}"),
        };
        foreach (var d in deltas)
            events.Add(("response.output_text.delta", $"{{\"type\":\"response.output_text.delta\",\"sequence_number\":{events.Count},\"output_index\":0,\"item_id\":\"msg_X\",\"content_index\":0,\"delta\":{J(d)},\"logprobs\":[]}}"));
        events.Add(("response.output_text.done", $"{{\"type\":\"response.output_text.done\",\"sequence_number\":{events.Count},\"output_index\":0,\"item_id\":\"msg_X\",\"content_index\":0,\"text\":{J(text)},\"logprobs\":[]}}"));
        events.Add(("response.content_part.done", $"{{\"type\":\"response.content_part.done\",\"sequence_number\":{events.Count},\"output_index\":0,\"item_id\":\"msg_X\",\"content_index\":0,\"part\":{part}}}"));
        events.Add(("response.output_item.done", $"{{\"type\":\"response.output_item.done\",\"sequence_number\":{events.Count},\"output_index\":0,\"item\":{message}}}"));
        string final = Response(status, "[" + message + "]", J(text), complete ? "null" : "{\"reason\":\"max_output_tokens\"}", usage);
        events.Add(($"response.{status}", $"{{\"type\":\"response.{status}\",\"sequence_number\":{events.Count},\"response\":{final}}}"));

        var expected = new StringBuilder();
        foreach (var (name, data) in events) expected.Append("event: ").Append(name).Append('\n').Append("data: ").Append(data).Append("\n\n");
        Assert.Equal(expected.ToString(), normalized);
    }

    [Fact]
    public async Task A_client_that_leaves_mid_stream_frees_its_sequence_and_nothing_is_stored()
    {
        var client = await server.ReadyClientAsync();
        using var cts = new CancellationTokenSource();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/responses")
        {
            Content = JsonBody("""{"input":"Talk for a long time.","max_output_tokens":2000,"stream":true}"""),
        };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        string? id = null;
        while (await reader.ReadLineAsync(cts.Token) is { } line)
        {
            if (line.StartsWith("data: ") && id is null) id = JsonDocument.Parse(line[6..]).RootElement.GetProperty("response").GetProperty("id").GetString();
            if (line.Contains("response.output_text.delta")) break;
        }
        Assert.NotNull(id);
        await server.Until(e => e.RunningSequences > 0);
        cts.Cancel();
        response.Dispose();
        await server.Until(e => e.RunningSequences == 0 && e.QueuedRequests == 0);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await client.GetAsync($"/v1/responses/{id}")).StatusCode);
    }
}
