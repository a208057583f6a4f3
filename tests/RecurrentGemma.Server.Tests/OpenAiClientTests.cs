#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental in the client; the server supports it.
using System.ClientModel;
using System.ClientModel.Primitives;
using OpenAI;
using OpenAI.Chat;

namespace RecurrentGemma.Server.Tests;

/// <summary>The official OpenAI .NET client against the server, unchanged.</summary>
public class OpenAiClientTests(DemoServer server) : IClassFixture<DemoServer>
{
    async Task<OpenAIClient> Client(string key = "unused")
    {
        var http = await server.ReadyClientAsync();
        return new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions
        {
            Endpoint = new Uri(http.BaseAddress!, "/v1"),
            Transport = new HttpClientPipelineTransport(http),
        });
    }

    [Fact]
    public async Task Lists_models()
    {
        var models = (await (await Client()).GetOpenAIModelClient().GetModelsAsync()).Value;
        Assert.Contains(models, m => m.Id == "recurrentgemma-demo");
    }

    [Fact]
    public async Task Structured_output_through_the_clients_json_schema_format_parses_into_a_type()
    {
        var chat = (await Client()).GetChatClient("recurrentgemma-demo");
        var schema = BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","maxLength":10},"population":{"type":"integer","minimum":0,"maximum":40000000},"capital":{"type":"boolean"}},"required":["city","population","capital"],"additionalProperties":false}""");
        var options = new ChatCompletionOptions
        {
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("city_info", schema, jsonSchemaIsStrict: true),
            MaxOutputTokenCount = 300, Seed = 11, Temperature = 1.0f,
        };
        var result = (await chat.CompleteChatAsync([new UserChatMessage("Describe a city.")], options)).Value;
        Assert.Equal(ChatFinishReason.Stop, result.FinishReason);
        var city = System.Text.Json.JsonSerializer.Deserialize<CityInfo>(result.Content[0].Text, new System.Text.Json.JsonSerializerOptions { PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.CamelCase })!;
        Assert.InRange(city.Population, 0, 40000000);
        Assert.True(city.City.Length <= 10);

        var json = (await chat.CompleteChatAsync([new UserChatMessage("JSON")], new ChatCompletionOptions
        {
            ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat(), MaxOutputTokenCount = 400, Seed = 2,
        })).Value;
        if (json.FinishReason == ChatFinishReason.Stop)
            Assert.Equal(System.Text.Json.JsonValueKind.Object, System.Text.Json.JsonDocument.Parse(json.Content[0].Text).RootElement.ValueKind);
    }

    sealed record CityInfo(string City, long Population, bool Capital);

    [Fact]
    public async Task Tool_calls_round_trip_through_the_clients_tool_api()
    {
        var chat = (await Client()).GetChatClient("recurrentgemma-demo");
        var weather = ChatTool.CreateFunctionTool("get_weather", "Weather in a city",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","maxLength":12}},"required":["city"],"additionalProperties":false}"""), functionSchemaIsStrict: true);
        var options = new ChatCompletionOptions { Tools = { weather }, ToolChoice = ChatToolChoice.CreateRequiredChoice(), MaxOutputTokenCount = 200, Seed = 4 };
        List<ChatMessage> messages = [new UserChatMessage("Weather in Paris?")];
        var first = (await chat.CompleteChatAsync(messages, options)).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls.Take(1));
        Assert.Equal("get_weather", call.FunctionName);
        using (var args = System.Text.Json.JsonDocument.Parse(call.FunctionArguments))
            Assert.True(args.RootElement.GetProperty("city").GetString()!.Length <= 12);

        messages.Add(new AssistantChatMessage(first));
        foreach (var c in first.ToolCalls) messages.Add(new ToolChatMessage(c.Id, "{\"temp\":18}"));
        var answer = (await chat.CompleteChatAsync(messages, new ChatCompletionOptions { Tools = { weather }, MaxOutputTokenCount = 8, Seed = 5 })).Value;
        Assert.True(answer.Usage.InputTokenDetails.CachedTokenCount > 0);
    }

    [Fact]
    public async Task Chats_without_streaming()
    {
        var chat = (await Client()).GetChatClient("recurrentgemma-demo");
        var result = (await chat.CompleteChatAsync([new SystemChatMessage("Be brief."), new UserChatMessage("Hello!")],
            new ChatCompletionOptions { MaxOutputTokenCount = 6, Seed = 3, Temperature = 0.7f })).Value;
        Assert.Equal(ChatMessageRole.Assistant, result.Role);
        Assert.Equal(ChatFinishReason.Length, result.FinishReason);
        Assert.Equal(6, result.Usage.OutputTokenCount);
        Assert.StartsWith("chatcmpl-", result.Id);
    }

    [Fact]
    public async Task Chats_with_streaming_and_usage()
    {
        var chat = (await Client()).GetChatClient("recurrentgemma-demo");
        var text = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Hello!")], new ChatCompletionOptions { MaxOutputTokenCount = 5, Seed = 3 }))
        {
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(5, usage!.OutputTokenCount);
        // The same seed without streaming gives the same text.
        var whole = (await chat.CompleteChatAsync([new UserChatMessage("Hello!")], new ChatCompletionOptions { MaxOutputTokenCount = 5, Seed = 3 })).Value;
        Assert.Equal(whole.Content[0].Text, text.ToString());
    }

    [Fact]
    public async Task Client_exceptions_carry_our_status_codes()
    {
        var client = await Client();
        var unknown = await Assert.ThrowsAsync<ClientResultException>(() => client.GetChatClient("gpt-4o").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, unknown.Status);
        var bad = await Assert.ThrowsAsync<ClientResultException>(() => client.GetChatClient("recurrentgemma-demo")
            .CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { Temperature = 5 }));
        Assert.Equal(400, bad.Status);
        Assert.Contains("temperature", bad.Message);
    }
}

/// <summary>The official OpenAI JavaScript client (npm "openai"), unchanged, over a real socket.</summary>
public class JavaScriptClientTests
{
    [Fact]
    public async Task The_javascript_client_lists_chats_streams_completes_and_sees_errors()
    {
        var root = ServerFactory.RepoRoot;
        var dir = Path.Combine(root, "tests", "clients", "js");
        if (!Directory.Exists(Path.Combine(dir, "node_modules", "openai")) || !Directory.Exists(Path.Combine(dir, "node_modules", "zod")))
        {
            var (installed, log) = Run("npm", "ci --no-audit --no-fund", dir, TimeSpan.FromMinutes(5));
            Assert.True(installed == 0, $"npm ci failed (needs the npm registry once):\n{log}");
        }
        await using var server = new ServerFactory();
        var url = server.StartOnSocket();
        await server.Host.Loaded;
        var (code, output) = await Task.Run(() => Run("node", $"check.mjs {url}", dir, TimeSpan.FromMinutes(2)));
        Assert.True(code == 0, output);
        Assert.Contains("ok completions.create best_of", output);
        Assert.Contains("ok completions.create with token ids", output);
        Assert.Contains("ok completions.create echo + logprobs scores the prompt", output);
        Assert.Contains("ok BadRequestError carries status 400 and param", output);
        Assert.Contains("ok chat.completions.parse with zodResponseFormat", output);
        Assert.Contains("ok zodResponseFormat with url, bounded and positive numbers", output);
        Assert.Contains("ok guided_choice through the client", output);
        Assert.Contains("ok streamed tool calls (same call as non-stream)", output);
        Assert.Contains("ok responses.stream (same text as non-stream, events numbered in order)", output);
        Assert.Contains("ok continuing a deleted response: 404 naming previous_response_id", output);
        Assert.Contains("ok responses.create with conversation continues the conversation's state", output);
        Assert.Contains("ok conversations.items.list (paginated, oldest first)", output);
        Assert.Contains("ok responses.inputTokens.count equals the response's input tokens", output);
        Assert.Contains("ok responses.retrieve with stream and starting_after resumes the events", output);
        Assert.Contains("ok responses.cancel stops a background response", output);
        Assert.Contains("ok chat.completions.retrieve, list and messages.list of a stored completion", output);
        Assert.Contains("ok a response in a deleted conversation: 404 naming conversation", output);
    }

    static (int Code, string Output) Run(string file, string args, string cwd, TimeSpan timeout)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file, args) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(true); return (-1, "timed out"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

}
