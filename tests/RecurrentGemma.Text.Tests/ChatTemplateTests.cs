namespace RecurrentGemma.Text.Tests;

/// <summary>
/// Expected ids below were computed by Python sentencepiece 0.1.97 (Debian's python3-sentencepiece)
/// on the Gemma fixture model: <c>[2] + sp.encode(rendered)</c>.
/// </summary>
public class ChatTemplateTests
{
    static GemmaTokenizer Tok => TokenizerFixtures.Gemma;

    [Fact]
    public void Single_turn()
    {
        List<ChatMessage> messages = [ChatMessage.User("Hi")];
        Assert.Equal("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", GemmaChatTemplate.Render(messages));
        Assert.Equal([2, 106, 1645, 108, 2151, 107, 108, 106, 2516, 108], GemmaChatTemplate.Encode(Tok, messages));
    }

    [Fact]
    public void Multi_turn_maps_assistant_to_model_and_trims_messages()
    {
        List<ChatMessage> messages = [ChatMessage.User("What is 2+2?"), ChatMessage.Assistant("  It is 4.  \n"), ChatMessage.User("And 3+3?")];
        Assert.Equal("<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\nIt is 4.<end_of_turn>\n<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n",
            GemmaChatTemplate.Render(messages));
        Assert.Equal([2, 106, 1645, 108, 1841, 603, 235248, 235284, 235340, 235284, 235336, 107, 108, 106, 2516, 108, 1718, 603, 235248, 235310, 235265, 107, 108, 106, 1645, 108, 2079, 235248, 235304, 235340, 235304, 235336, 107, 108, 106, 2516, 108],
            GemmaChatTemplate.Encode(Tok, messages));
    }

    [Theory]
    [InlineData("system")]
    [InlineData("developer")]
    public void System_text_is_folded_into_the_first_user_turn(string role)
    {
        List<ChatMessage> messages = [new(role, "You are terse."), ChatMessage.User("Name a color.")];
        Assert.Equal("<start_of_turn>user\nYou are terse.\n\nName a color.<end_of_turn>\n<start_of_turn>model\n", GemmaChatTemplate.Render(messages));
        Assert.Equal([2, 106, 1645, 108, 2045, 708, 12769, 235265, 109, 1232, 476, 2881, 235265, 107, 108, 106, 2516, 108], GemmaChatTemplate.Encode(Tok, messages));
    }

    [Fact]
    public void Text_parts_are_joined()
    {
        List<ChatMessage> messages = [new("user", null, [new("text", "Describe"), new("text", "this list:")])];
        Assert.Equal([2, 106, 1645, 108, 50721, 108, 883, 1889, 235292, 107, 108, 106, 2516, 108], GemmaChatTemplate.Encode(Tok, messages));
    }

    [Fact]
    public void The_small_fixture_model_prompt_matches_its_recorded_ids()
    {
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(TokenizerFixtures.Root, "tokenizer", "cases.json")));
        var chat = doc.RootElement.GetProperty("chat_prompt");
        List<ChatMessage> messages = [ChatMessage.User(chat.GetProperty("user_message").GetString()!)];
        Assert.Equal(chat.GetProperty("formatted").GetString(), GemmaChatTemplate.Render(messages));
        Assert.Equal(chat.GetProperty("prompt_ids_with_bos").EnumerateArray().Select(x => x.GetInt32()), GemmaChatTemplate.Encode(TokenizerFixtures.Tiny, messages));
    }

    [Fact]
    public void Consecutive_user_messages_are_joined_into_one_turn()
    {
        List<ChatMessage> messages = [ChatMessage.User("a"), ChatMessage.User("b")];
        Assert.Equal("<start_of_turn>user\na\n\nb<end_of_turn>\n<start_of_turn>model\n", GemmaChatTemplate.Render(messages));
    }

    public static IEnumerable<object[]> BadConversations() =>
    [
        [new List<ChatMessage>(), "messages", "at least one message"],
        [new List<ChatMessage> { new("tool", "42") }, "messages[0].role", "tool and function messages are not supported"],
        [new List<ChatMessage> { ChatMessage.User("hi"), new("user", null, [new("image_url", null)]) }, "messages[1].content[0].type", "only text content"],
        [new List<ChatMessage> { ChatMessage.User("hi"), ChatMessage.Assistant("hello") }, "messages", "must end with a user message"],
        [new List<ChatMessage> { ChatMessage.User("hi"), ChatMessage.System("be brief") }, "messages", "must end with a user message"],
        [new List<ChatMessage> { ChatMessage.User("   ") }, "messages[0].content", "must not be empty"],
        [new List<ChatMessage> { new("wizard", "hi") }, "messages[0].role", "'wizard' is not one of"],
        [new List<ChatMessage> { new("user", null, [new("text", null)]) }, "messages[0].content[0].text", "is required"],
    ];

    [Theory, MemberData(nameof(BadConversations))]
    public void Conversations_that_cannot_be_rendered_name_the_message(List<ChatMessage> messages, string param, string message)
    {
        var e = Assert.Throws<ChatTemplateException>(() => GemmaChatTemplate.Render(messages));
        Assert.Equal(param, e.Param);
        Assert.Contains(message, e.Message);
    }
}
