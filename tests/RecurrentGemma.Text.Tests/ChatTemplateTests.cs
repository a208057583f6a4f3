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
        [new List<ChatMessage> { new("tool", "42") }, "messages[0].tool_call_id", "matches no tool call of an earlier assistant message"],
        [new List<ChatMessage> { ChatMessage.User("hi"), new("user", null, [new("image_url", null)]) }, "messages[1].content[0].type", "only text content"],
        [new List<ChatMessage> { ChatMessage.User("hi"), ChatMessage.Assistant("hello") }, "messages", "must end with a user or tool message"],
        [new List<ChatMessage> { ChatMessage.User("hi"), ChatMessage.System("be brief") }, "messages", "must end with a user or tool message"],
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

    [Fact]
    public void Tools_are_described_in_the_first_user_turn_and_calls_and_results_render_as_blocks()
    {
        var tools = new ToolPrompt([new ToolDefinition("get_time", "Time in a zone", System.Text.Json.JsonDocument.Parse("""{"type":"object"}""").RootElement)]);
        var messages = new List<ChatMessage>
        {
            ChatMessage.System("Be brief."),
            ChatMessage.User("Time?"),
            new("assistant", null) { ToolCalls = [new ToolCall("call_1", "get_time", """{"zone":"UTC"}""")] },
            new("tool", "12:00") { ToolCallId = "call_1" },
        };
        var text = GemmaChatTemplate.Render(messages, tools);
        Assert.StartsWith("<start_of_turn>user\nBe brief.\n\nYou can call functions.", text);
        Assert.Contains("{\"name\":\"get_time\",\"description\":\"Time in a zone\",\"parameters\":{\"type\":\"object\"}}\n\nTime?<end_of_turn>", text);
        Assert.Contains("<start_of_turn>model\n<tool_call>\n{\"name\":\"get_time\",\"arguments\":{\"zone\":\"UTC\"}}\n</tool_call><end_of_turn>", text);
        Assert.EndsWith("<start_of_turn>user\n<tool_response>\n{\"tool_call_id\":\"call_1\",\"name\":\"get_time\",\"content\":\"12:00\"}\n</tool_response><end_of_turn>\n<start_of_turn>model\n", text);
        // Without tools the same conversation's tool message has nothing to answer.
        var e = Assert.Throws<ChatTemplateException>(() => GemmaChatTemplate.Render([ChatMessage.User("x"), new("tool", "y") { ToolCallId = "nope" }]));
        Assert.Equal("messages[1].tool_call_id", e.Param);
    }

    [Fact]
    public void A_continued_final_message_stays_open_and_keeps_its_trailing_space()
    {
        var turns = GemmaChatTemplate.Turns([ChatMessage.System("Be brief."), ChatMessage.User("Tell a story"), ChatMessage.Assistant("  Once upon a ")], continueFinal: true);
        Assert.Equal(["user", "model"], turns.Select(t => t.Role));
        Assert.True(turns[^1].Open);
        Assert.Equal("Once upon a ", turns[^1].Text);   // leading space trimmed as always, the trailing one is the prefix's
        Assert.False(turns[0].Open);

        // Only an assistant message after a user turn can be continued.
        foreach (var messages in new List<ChatMessage>[]
                 {
                     [ChatMessage.User("x")],
                     [ChatMessage.Assistant("x")],
                     [ChatMessage.User("x"), new("assistant", null) { ToolCalls = [new ToolCall("c", "f", "{}")] }],
                 })
            Assert.Equal("messages", Assert.Throws<ChatTemplateException>(() => GemmaChatTemplate.Turns(messages, continueFinal: true)).Param);
        // Without the flag a conversation ending with an assistant message is refused as before.
        Assert.Throws<ChatTemplateException>(() => GemmaChatTemplate.Turns([ChatMessage.User("x"), ChatMessage.Assistant("y")]));
    }

    [Theory]
    [InlineData("<tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n</tool_call>", 1)]
    [InlineData("<tool_call>\n{\"name\":\"f\",\"arguments\":{\"a\":1}}\n</tool_call>\n<tool_call>\n{\"name\":\"g\",\"arguments\":{\"b\":\"x\\n</tool_call>\"}}\n</tool_call>", 2)]
    [InlineData("Sure: <tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n</tool_call>", 0)]
    [InlineData("<tool_call>\n{\"name\":\"f\",\"arguments\":{}", 0)]
    [InlineData("<tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n</tool_call> trailing", 0)]
    public void Answers_parse_as_calls_only_when_they_are_all_calls(string text, int calls)
    {
        Assert.Equal(calls > 0, ToolFormat.TryParse(text, out var parsed));
        Assert.Equal(calls, parsed.Count);
        if (calls > 0) Assert.Equal(text, string.Join(ToolFormat.CallSeparator, parsed.Select(c => ToolFormat.RenderCall(c.Name, c.Arguments))));
    }
}
