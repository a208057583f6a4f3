#pragma warning disable OPENAI001 // the .NET client marks its Conversations and Responses APIs experimental; the server implements them.
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json;
using OpenAI;
using OpenAI.Conversations;
using OpenAI.Responses;

namespace RecurrentGemma.Server.Tests;

/// <summary>The official OpenAI .NET client's Conversations API, and responses run in a conversation, unchanged.</summary>
public class ConversationsClientTests(DemoServer server) : IClassFixture<DemoServer>
{
    async Task<OpenAIClient> Client()
    {
        var http = await server.ReadyClientAsync();
        return new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions
        {
            Endpoint = new Uri(http.BaseAddress!, "/v1"),
            Transport = new HttpClientPipelineTransport(http),
        });
    }

    static CreateResponseOptions InConversation(string text, string conversationId) =>
        new("recurrentgemma-demo", [ResponseItem.CreateUserMessageItem(text)])
        {
            MaxOutputTokenCount = 6, Temperature = 0, ConversationOptions = new ResponseConversationOptions(conversationId),
        };

    [Fact]
    public async Task Creates_a_conversation_answers_in_it_lists_its_items_and_deletes_it()
    {
        var openai = await Client();
        var conversations = openai.GetConversationClient();
        var responses = openai.GetResponsesClient();

        var creation = new ConversationCreationOptions();
        creation.Metadata["topic"] = "weather";
        creation.Items.Add(ResponseItem.CreateUserMessageItem("Let us talk about the weather."));
        ConversationResource conversation = await conversations.CreateConversationAsync(creation);
        Assert.StartsWith("conv_", conversation.Id);
        Assert.Equal("weather", conversation.Metadata["topic"]);

        ResponseResult first = await responses.CreateResponseAsync(InConversation("Is it sunny?", conversation.Id));
        Assert.Equal(conversation.Id, first.ConversationOptions.ConversationId);
        ResponseResult second = await responses.CreateResponseAsync(InConversation("And tomorrow?", conversation.Id));
        // The conversation's parked state was continued: its prompt and five fed answer ids.
        Assert.Equal(first.Usage.InputTokenCount + 5, second.Usage.InputTokenDetails.CachedTokenCount);

        // Items, oldest first, two to a page (the client follows last_id).
        var texts = new List<string>();
        await foreach (ClientResult page in conversations.GetConversationItemsAsync(conversation.Id, limit: 2, order: "asc", after: null, include: null, options: new RequestOptions()).GetRawPagesAsync())
        {
            using var json = JsonDocument.Parse(page.GetRawResponse().Content.ToString());
            foreach (var item in json.RootElement.GetProperty("data").EnumerateArray()) texts.Add(item.GetProperty("content")[0].GetProperty("text").GetString()!);
        }
        Assert.Equal(["Let us talk about the weather.", "Is it sunny?", first.GetOutputText(), "And tomorrow?", second.GetOutputText()], texts);

        var update = new ConversationUpdateOptions();
        update.Metadata["topic"] = "climate";
        ConversationResource updated = await conversations.UpdateConversationAsync(conversation.Id, update);
        Assert.Equal("climate", updated.Metadata["topic"]);
        Assert.Equal("climate", ((ConversationResource)await conversations.GetConversationAsync(conversation.Id)).Metadata["topic"]);

        ConversationDeletionResult deleted = await conversations.DeleteConversationAsync(conversation.Id);
        Assert.True(deleted.Deleted);
        var gone = await Assert.ThrowsAsync<ClientResultException>(() => conversations.GetConversationAsync(conversation.Id));
        Assert.Equal(404, gone.Status);
        var cannot = await Assert.ThrowsAsync<ClientResultException>(() => responses.CreateResponseAsync(InConversation("Still there?", conversation.Id)));
        Assert.Equal(404, cannot.Status);
    }

    [Fact]
    public async Task Adds_reads_and_deletes_items_with_the_clients_protocol_methods()
    {
        var conversations = (await Client()).GetConversationClient();
        ConversationResource conversation = await conversations.CreateConversationAsync(new ConversationCreationOptions());
        var added = await conversations.CreateConversationItemsAsync(conversation.Id,
            BinaryContent.Create(BinaryData.FromString("""{"items": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]}, {"role": "assistant", "content": "second"}]}""")),
            include: null, options: new RequestOptions());
        using var list = JsonDocument.Parse(added.GetRawResponse().Content.ToString());
        var ids = list.RootElement.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("id").GetString()!).ToArray();
        Assert.Equal(2, ids.Length);

        var one = await conversations.GetConversationItemAsync(conversation.Id, ids[1], include: null, options: new RequestOptions());
        using (var item = JsonDocument.Parse(one.GetRawResponse().Content.ToString()))
            Assert.Equal("second", item.RootElement.GetProperty("content")[0].GetProperty("text").GetString());

        await conversations.DeleteConversationItemAsync(conversation.Id, ids[0], new RequestOptions());
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => conversations.GetConversationItemAsync(conversation.Id, ids[0], include: null, options: new RequestOptions()));
        Assert.Equal(404, missing.Status);
    }
}
