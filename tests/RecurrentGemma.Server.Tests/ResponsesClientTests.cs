#pragma warning disable OPENAI001 // the .NET client marks its Responses API experimental; the server implements it.
using System.ClientModel;
using System.ClientModel.Primitives;
using OpenAI;
using OpenAI.Responses;

namespace RecurrentGemma.Server.Tests;

/// <summary>The official OpenAI .NET client's Responses API against the server, unchanged.</summary>
public class ResponsesClientTests(DemoServer server) : IClassFixture<DemoServer>
{
    async Task<ResponsesClient> Client()
    {
        var http = await server.ReadyClientAsync();
        return new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions
        {
            Endpoint = new Uri(http.BaseAddress!, "/v1"),
            Transport = new HttpClientPipelineTransport(http),
        }).GetResponsesClient();
    }

    static CreateResponseOptions Options(string text, string? previous = null) => new("recurrentgemma-demo", [ResponseItem.CreateUserMessageItem(text)])
    {
        Instructions = "Answer briefly.", MaxOutputTokenCount = 6, PreviousResponseId = previous, Temperature = 0,
    };

    static CreateResponseOptions Stream(CreateResponseOptions o) { o.StreamingEnabled = true; return o; }

    [Fact]
    public async Task Creates_continues_retrieves_lists_and_deletes()
    {
        var client = await Client();
        ResponseResult first = await client.CreateResponseAsync(Options("Hello!"));
        Assert.StartsWith("resp_", first.Id);
        Assert.Equal(ResponseStatus.Incomplete, first.Status);
        Assert.Equal(6, first.Usage.OutputTokenCount);
        Assert.NotEmpty(first.GetOutputText());

        ResponseResult second = await client.CreateResponseAsync(Options("Tell me more.", first.Id));
        Assert.Equal(first.Id, second.PreviousResponseId);
        // The first turn's prompt and five fed answer ids were continued, not prefilled again.
        Assert.Equal(first.Usage.InputTokenCount + 5, second.Usage.InputTokenDetails.CachedTokenCount);

        ResponseResult retrieved = await client.GetResponseAsync(second.Id);
        Assert.Equal(second.GetOutputText(), retrieved.GetOutputText());

        var items = new List<ResponseItem>();
        await foreach (var item in client.GetResponseInputItemsAsync(second.Id)) items.Add(item);
        Assert.Equal(3, items.Count);   // newest first: this turn's input, the first answer, the first input
        Assert.Equal("Tell me more.", Assert.IsAssignableFrom<MessageResponseItem>(items[0]).Content[0].Text);
        Assert.Equal(first.GetOutputText(), Assert.IsAssignableFrom<MessageResponseItem>(items[1]).Content[0].Text);

        ResponseDeletionResult deleted = await client.DeleteResponseAsync(second.Id);
        Assert.True(deleted.Deleted);
        var gone = await Assert.ThrowsAsync<ClientResultException>(() => client.GetResponseAsync(second.Id));
        Assert.Equal(404, gone.Status);
        var cannot = await Assert.ThrowsAsync<ClientResultException>(() => client.CreateResponseAsync(Options("Again.", second.Id)));
        Assert.Equal(404, cannot.Status);
    }

    [Fact]
    public async Task Streams_the_same_text_as_without_streaming()
    {
        var client = await Client();
        ResponseResult plain = await client.CreateResponseAsync(Options("Stream this."));
        var text = new System.Text.StringBuilder();
        ResponseResult? final = null;
        int expectedSequence = 0;
        await foreach (var update in await client.CreateResponseStreamingAsync(Stream(Options("Stream this."))))
        {
            Assert.Equal(expectedSequence++, update.SequenceNumber);
            if (update is StreamingResponseOutputTextDeltaUpdate delta) text.Append(delta.Delta);
            if (update is StreamingResponseIncompleteUpdate incomplete) final = incomplete.Response;
        }
        Assert.Equal(plain.GetOutputText(), text.ToString());
        Assert.NotNull(final);
        Assert.Equal(plain.GetOutputText(), final!.GetOutputText());
        Assert.Equal(ResponseStatus.Incomplete, final.Status);
    }

    [Fact]
    public async Task Logprobs_come_with_the_output_text_when_included_and_stream_in_its_deltas()
    {
        var client = await Client();
        CreateResponseOptions Asking(bool include)
        {
            var o = Options("Score this.");
            o.TopLogProbabilityCount = 3;
            if (include) o.IncludedProperties.Add(IncludedResponseProperty.MessageOutputTextLogProbabilities);
            return o;
        }

        // As OpenAI's API: top_logprobs alone returns no logprobs; include asks for them.
        ResponseResult without = await client.CreateResponseAsync(Asking(include: false));
        Assert.Empty(Message(without).Content[0].OutputTextTokenLogProbabilities);

        ResponseResult plain = await client.CreateResponseAsync(Asking(include: true));
        Assert.Equal(3, plain.TopLogProbabilityCount);
        var logprobs = Message(plain).Content[0].OutputTextTokenLogProbabilities;
        Assert.Equal(plain.Usage.OutputTokenCount, logprobs.Count);
        Assert.Equal(plain.GetOutputText(), string.Concat(logprobs.Select(l => System.Text.Encoding.UTF8.GetString(l.Utf8Bytes!.Value.ToArray()))));
        foreach (var l in logprobs)
        {
            Assert.True(l.LogProbability <= 0);
            Assert.Equal(3, l.TopLogProbabilities.Count);
            // Greedy: the chosen token is the most likely one, and the alternatives come most likely first.
            Assert.Equal(l.Token, l.TopLogProbabilities[0].Token);
            Assert.Equal(l.LogProbability, l.TopLogProbabilities[0].LogProbability, 4);
            Assert.True(l.TopLogProbabilities[1].LogProbability <= l.TopLogProbabilities[0].LogProbability);
        }

        var streamed = new List<ResponseTokenLogProbabilityDetails>();
        ResponseResult? final = null;
        await foreach (var update in await client.CreateResponseStreamingAsync(Stream(Asking(include: true))))
        {
            if (update is StreamingResponseOutputTextDeltaUpdate delta) streamed.AddRange(delta.TokenLogProbabilities);
            if (update is StreamingResponseIncompleteUpdate incomplete) final = incomplete.Response;
        }
        Assert.Equal(logprobs.Select(l => (l.Token, l.LogProbability)), streamed.Select(l => (l.Token, l.LogProbability)));
        Assert.Equal(logprobs.Select(l => l.Token), Message(final!).Content[0].OutputTextTokenLogProbabilities.Select(l => l.Token));

        // A stored response keeps them.
        ResponseResult retrieved = await client.GetResponseAsync(plain.Id);
        Assert.Equal(logprobs.Select(l => l.LogProbability), Message(retrieved).Content[0].OutputTextTokenLogProbabilities.Select(l => l.LogProbability));
    }

    static MessageResponseItem Message(ResponseResult r) => Assert.IsAssignableFrom<MessageResponseItem>(Assert.Single(r.OutputItems));

    [Fact]
    public async Task Runs_a_background_response_polls_it_resumes_its_events_and_cancels_another()
    {
        var client = await Client();
        var options = Options("Name a river.");
        options.BackgroundModeEnabled = true;
        ResponseResult queued = await client.CreateResponseAsync(options);
        Assert.Equal(ResponseStatus.Queued, queued.Status);
        Assert.True(queued.BackgroundModeEnabled);
        ResponseResult polled = queued;
        for (int i = 0; i < 200 && polled.Status is ResponseStatus.Queued or ResponseStatus.InProgress; i++)
        {
            await Task.Delay(50);
            polled = await client.GetResponseAsync(queued.Id);
        }
        Assert.Equal(ResponseStatus.Incomplete, polled.Status);
        Assert.Equal(6, polled.Usage.OutputTokenCount);

        var text = new System.Text.StringBuilder();
        int? first = null;
        await foreach (var update in await client.GetResponseStreamingAsync(new GetResponseOptions(queued.Id) { StreamingEnabled = true, StartingAfter = 1 }))
        {
            first ??= update.SequenceNumber;
            if (update is StreamingResponseOutputTextDeltaUpdate delta) text.Append(delta.Delta);
        }
        Assert.Equal(2, first);
        Assert.Equal(polled.GetOutputText(), text.ToString());

        var running = Options("Go on");
        running.BackgroundModeEnabled = true;
        running.MaxOutputTokenCount = 4000;
        running.TextOptions = new ResponseTextOptions
        {
            TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("long", BinaryData.FromString(
                """{"type": "object", "properties": {"s": {"type": "array", "minItems": 3, "items": {"type": "string", "minLength": 1000}}}, "required": ["s"], "additionalProperties": false}"""),
                jsonSchemaIsStrict: true),
        };
        ResponseResult started = await client.CreateResponseAsync(running);
        ResponseResult cancelled = await client.CancelResponseAsync(started.Id);
        Assert.Equal(ResponseStatus.Cancelled, cancelled.Status);
    }
}
