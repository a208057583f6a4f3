using System.Net;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

public class EndpointTests(DemoServer server) : IClassFixture<DemoServer>
{
    const string Chat = """{"model":"recurrentgemma-demo","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hello there!"}],"max_tokens":8,"seed":7}""";

    [Fact]
    public async Task Models_are_listed_and_found_by_id()
    {
        var client = await server.ReadyClientAsync();
        var list = await ReadJson(await client.GetAsync("/v1/models"));
        Assert.Equal("list", list.GetProperty("object").GetString());
        Assert.Equal("recurrentgemma-demo", list.GetProperty("data")[0].GetProperty("id").GetString());
        var one = await ReadJson(await client.GetAsync("/v1/models/recurrentgemma-demo"));
        Assert.Equal("model", one.GetProperty("object").GetString());
        // vLLM's fields, read by clients that size their prompts by them: the same limit /tokenize reports.
        Assert.Equal("recurrentgemma-demo", one.GetProperty("root").GetString());
        var limit = (await ReadJson(await client.PostAsync("/tokenize", JsonBody("""{"prompt":"x"}""")))).GetProperty("max_model_len").GetInt32();
        Assert.Equal(limit, one.GetProperty("max_model_len").GetInt32());
        Assert.Equal(limit, list.GetProperty("data")[0].GetProperty("max_model_len").GetInt32());
        var missing = await client.GetAsync("/v1/models/gpt-4");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("model_not_found", (await ReadJson(missing)).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_chat_completion_has_openais_shape()
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(Chat));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var body = await ReadJson(r);
        Assert.StartsWith("chatcmpl-", body.GetProperty("id").GetString());
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        Assert.True(body.GetProperty("created").GetInt64() > 1_700_000_000);
        Assert.Equal("recurrentgemma-demo", body.GetProperty("model").GetString());
        Assert.False(string.IsNullOrEmpty(body.GetProperty("system_fingerprint").GetString()));
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal(JsonValueKind.String, choice.GetProperty("message").GetProperty("content").ValueKind);
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        Assert.Contains(choice.GetProperty("finish_reason").GetString(), new[] { "stop", "length" });
        var usage = body.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        Assert.True(usage.GetProperty("prompt_tokens_details").TryGetProperty("cached_tokens", out _));
    }

    [Fact]
    public async Task Raw_sse_framing_is_openais_byte_for_byte()
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true},"seed":3}"""));
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType!.MediaType);
        var raw = await r.Content.ReadAsStringAsync();
        Assert.EndsWith("data: [DONE]\n\n", raw);
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToList();
        var ids = chunks.Select(c => c.GetProperty("id").GetString()).Distinct().ToList();
        Assert.Single(ids);
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        var finish = chunks[^2].GetProperty("choices")[0];
        Assert.Equal("length", finish.GetProperty("finish_reason").GetString());
        var usageChunk = chunks[^1];
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        Assert.Equal(5, usageChunk.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        // Content chunks carry only content, and a null finish_reason.
        foreach (var c in chunks[1..^2])
        {
            var choice = c.GetProperty("choices")[0];
            Assert.Equal(JsonValueKind.Null, choice.GetProperty("finish_reason").ValueKind);
            Assert.False(choice.GetProperty("delta").TryGetProperty("role", out _));
        }
    }

    [Fact]
    public async Task Stream_and_non_stream_with_the_same_seed_give_the_same_text()
    {
        var client = await server.ReadyClientAsync();
        const string body = """{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":12,"temperature":0.9,"seed":42%s}""";
        var whole = await ReadJson(await client.PostAsync("/v1/chat/completions", JsonBody(body.Replace("%s", ""))));
        var text = whole.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
        var raw = await (await client.PostAsync("/v1/chat/completions", JsonBody(body.Replace("%s", ",\"stream\":true")))).Content.ReadAsStringAsync();
        var streamed = string.Concat(raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]")
            .Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")).Where(c => c.GetArrayLength() > 0)
            .Select(c => c[0].GetProperty("delta").TryGetProperty("content", out var t) ? t.GetString() : ""));
        Assert.Equal(text, streamed);
    }

    [Fact]
    public async Task Completions_take_a_string_or_several_prompts()
    {
        var client = await server.ReadyClientAsync();
        var one = await ReadJson(await client.PostAsync("/v1/completions", JsonBody("""{"model":"recurrentgemma-demo","prompt":"Once upon a time","max_tokens":6,"seed":1}""")));
        Assert.StartsWith("cmpl-", one.GetProperty("id").GetString());
        Assert.Equal("text_completion", one.GetProperty("object").GetString());
        Assert.Equal(6, one.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var many = await ReadJson(await client.PostAsync("/v1/completions", JsonBody("""{"prompt":["a b c","d e f"],"max_tokens":3,"n":2,"seed":1,"logprobs":2,"echo":true}""")));
        var choices = many.GetProperty("choices");
        Assert.Equal(4, choices.GetArrayLength());
        Assert.Equal(Enumerable.Range(0, 4), choices.EnumerateArray().Select(c => c.GetProperty("index").GetInt32()));
        Assert.StartsWith("a b c", choices[0].GetProperty("text").GetString());
        Assert.StartsWith("d e f", choices[3].GetProperty("text").GetString());
        // With echo, logprobs cover the prompt's tokens too (OpenAI's legacy behaviour), then the 3 generated.
        var lp = choices[0].GetProperty("logprobs");
        int promptIds = (await ReadJson(await client.PostAsync("/tokenize", JsonBody("""{"prompt":"a b c"}""")))).GetProperty("count").GetInt32();
        Assert.Equal(promptIds + 3, lp.GetProperty("tokens").GetArrayLength());
        Assert.Equal(2, lp.GetProperty("top_logprobs")[promptIds].EnumerateObject().Count());
        Assert.Equal(12, many.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Completions_take_token_ids_as_the_prompt()
    {
        var client = await server.ReadyClientAsync();
        async Task<int[]> Ids(string text) => (await ReadJson(await client.PostAsync("/tokenize", JsonBody($$"""{"prompt":"{{text}}"}""")))).GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var once = await Ids("Once upon a time");
        var far = await Ids("In a land far away");
        Assert.Equal(2, once[0]);   // /tokenize adds BOS, so its ids are what a text prompt reads

        static string Body(string prompt, string extra = "") => $$"""{"prompt":{{prompt}},"max_tokens":6,"temperature":0{{extra}}}""";
        var byText = await ReadJson(await client.PostAsync("/v1/completions", JsonBody(Body("\"Once upon a time\""))));
        var byIds = await ReadJson(await client.PostAsync("/v1/completions", JsonBody(Body(JsonSerializer.Serialize(once)))));
        Assert.Equal(byText.GetProperty("choices")[0].GetProperty("text").GetString(), byIds.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(once.Length, byIds.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // Several prompts of ids: a choice each, in order; echo gives back the text the ids spell.
        var both = await ReadJson(await client.PostAsync("/v1/completions", JsonBody(Body(JsonSerializer.Serialize(new[] { once, far }), ""","echo":true"""))));
        var choices = both.GetProperty("choices");
        Assert.Equal(2, choices.GetArrayLength());
        Assert.Equal("Once upon a time" + byText.GetProperty("choices")[0].GetProperty("text").GetString(), choices[0].GetProperty("text").GetString());
        Assert.StartsWith("In a land far away", choices[1].GetProperty("text").GetString());
        Assert.Equal(once.Length + far.Length, both.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // One prompt of more ids than the per-request prompt count (64) is still one prompt.
        var longIds = Enumerable.Repeat(once, 20).SelectMany(x => x).ToArray();
        var r = await client.PostAsync("/v1/completions", JsonBody(Body(JsonSerializer.Serialize(longIds))));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(longIds.Length, (await ReadJson(r)).GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Theory]
    [InlineData("/v1/completions", "\"prompt\":\"Once upon a time\"")]
    [InlineData("/v1/chat/completions", "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]")]
    public async Task Vllms_end_extensions_ignore_eos_min_tokens_and_stop_token_ids_work(string path, string input)
    {
        var client = await server.ReadyClientAsync();
        async Task<(int Tokens, string Finish)> Ask(string extra)
        {
            var r = await client.PostAsync(path, JsonBody($$"""{{{input}},"max_tokens":6,"temperature":0{{extra}}}"""));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var body = await ReadJson(r);
            return (body.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), body.GetProperty("choices")[0].GetProperty("finish_reason").GetString()!);
        }
        // <eos> (id 1) made the certain choice: the answer ends at once ...
        Assert.Equal((0, "stop"), await Ask(""","logit_bias":{"1":100}"""));
        // ... unless ignore_eos, which runs to max_tokens, or min_tokens, which holds it off for 3 tokens.
        Assert.Equal((6, "length"), await Ask(""","logit_bias":{"1":100},"ignore_eos":true"""));
        Assert.Equal((3, "stop"), await Ask(""","logit_bias":{"1":100},"min_tokens":3"""));
        // A caller's stop id ends it like <eos>; with ignore_eos it still does.
        Assert.Equal((0, "stop"), await Ask(""","logit_bias":{"5":100},"stop_token_ids":[5]"""));
        Assert.Equal((2, "stop"), await Ask(""","logit_bias":{"5":100},"stop_token_ids":[5],"ignore_eos":true,"min_tokens":2"""));
    }

    [Theory]
    [InlineData("/v1/completions", "\"prompt\":\"Once upon a time\"", "text")]
    [InlineData("/v1/chat/completions", "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]", "message")]
    public async Task Include_stop_str_in_output_keeps_the_stop_string_and_nothing_after_it(string path, string input, string field)
    {
        var client = await server.ReadyClientAsync();
        async Task<(string Text, string Finish)> Ask(string extra)
        {
            var r = await client.PostAsync(path, JsonBody($$"""{{{input}},"max_tokens":24,"temperature":0,"ignore_eos":true{{extra}}}"""));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var choice = (await ReadJson(r)).GetProperty("choices")[0];
            var text = field == "text" ? choice.GetProperty("text").GetString()! : choice.GetProperty("message").GetProperty("content").GetString()!;
            return (text, choice.GetProperty("finish_reason").GetString()!);
        }
        var (whole, _) = await Ask("");
        Assert.True(whole.Length >= 8, whole);
        // A stop string cut from the greedy text's middle: where it first occurs, the answer ends.
        int from = whole.Length / 2;
        while (char.IsSurrogate(whole[from]) || char.IsSurrogate(whole[from + 1])) from++;   // whole characters only
        string stop = whole.Substring(from, 2);
        int at = whole.IndexOf(stop, StringComparison.Ordinal);
        Assert.Equal((whole[..at], "stop"), await Ask($$""","stop":[{{JsonSerializer.Serialize(stop)}}]"""));
        Assert.Equal((whole[..(at + 2)], "stop"), await Ask($$""","stop":[{{JsonSerializer.Serialize(stop)}}],"include_stop_str_in_output":true"""));
    }

    [Fact]
    public async Task Echo_with_logprobs_scores_the_prompt_as_evaluation_harnesses_read_it()
    {
        var client = await server.ReadyClientAsync();
        // Score only: max_tokens 0. The prompt's tokens come back with their log-probabilities, the first with null.
        var scored = await ReadJson(await client.PostAsync("/v1/completions", JsonBody("""{"prompt":"Once upon a time","max_tokens":0,"echo":true,"logprobs":2}""")));
        var choice = scored.GetProperty("choices")[0];
        Assert.Equal("Once upon a time", choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var lp = choice.GetProperty("logprobs");
        var tokens = lp.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()).ToList();
        int promptTokens = scored.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        Assert.Equal(promptTokens, tokens.Count);
        Assert.Equal("Once upon a time", string.Concat(tokens));
        Assert.Equal(0, scored.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        var values = lp.GetProperty("token_logprobs");
        Assert.Equal(JsonValueKind.Null, values[0].ValueKind);
        Assert.Equal(JsonValueKind.Null, lp.GetProperty("top_logprobs")[0].ValueKind);
        for (int i = 1; i < tokens.Count; i++)
        {
            Assert.True(values[i].GetSingle() <= 0, $"token {i}: {values[i]}");
            var top = lp.GetProperty("top_logprobs")[i];
            Assert.InRange(top.EnumerateObject().Count(), 1, 2);
            // Its best alternative is at least as likely as the token itself.
            Assert.True(top.EnumerateObject().Max(p => p.Value.GetSingle()) >= values[i].GetSingle() - 1e-6);
        }
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32()).ToList();
        Assert.Equal(Enumerable.Range(0, tokens.Count).Select(i => tokens.Take(i).Sum(t => t!.Length)), offsets);

        // As lm-evaluation-harness asks: token ids, one generated token, greedy. The prompt's scores
        // are the same, then the generated token's follows.
        var ids = (await ReadJson(await client.PostAsync("/tokenize", JsonBody("""{"prompt":"Once upon a time"}""")))).GetProperty("tokens").ToString();
        var withOne = await ReadJson(await client.PostAsync("/v1/completions", JsonBody($$"""{"prompt":[{{ids}}],"max_tokens":1,"echo":true,"logprobs":1,"temperature":0}""")));
        var lp1 = withOne.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(promptTokens + 1, lp1.GetProperty("tokens").GetArrayLength());
        for (int i = 1; i < promptTokens; i++) Assert.Equal(values[i].GetSingle(), lp1.GetProperty("token_logprobs")[i].GetSingle(), 1e-5f);
        var last = lp1.GetProperty("top_logprobs")[promptTokens].EnumerateObject().Single();
        Assert.Equal(lp1.GetProperty("tokens")[promptTokens].GetString(), last.Name);   // greedy: the token is its own best alternative

        // Streamed: the echoed text, then a chunk with the prompt's logprobs, then the tokens.
        var raw = await (await client.PostAsync("/v1/completions", JsonBody("""{"prompt":"Once upon a time","max_tokens":2,"echo":true,"logprobs":0,"stream":true}"""))).Content.ReadAsStringAsync();
        var chunks = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]")
            .Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")[0]).ToList();
        Assert.Equal("Once upon a time", chunks[0].GetProperty("text").GetString());
        Assert.Equal(promptTokens, chunks[1].GetProperty("logprobs").GetProperty("tokens").GetArrayLength());

        // max_tokens 0 only scores a prompt: without echo and logprobs it asks for nothing.
        foreach (var body in new[] { """{"prompt":"x","max_tokens":0}""", """{"prompt":"x","max_tokens":0,"echo":true}""", """{"prompt":"x","max_tokens":0,"logprobs":1}""" })
        {
            var r = await client.PostAsync("/v1/completions", JsonBody(body));
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal("max_tokens", (await ReadJson(r)).GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task A_prefilled_answer_is_continued_like_the_same_raw_prompt()
    {
        var client = await server.ReadyClientAsync();
        const string Messages = """[{"role":"user","content":"Tell me a story"},{"role":"assistant","content":"Once upon a"}]""";
        var ids = await ReadJson(await client.PostAsync("/tokenize", JsonBody($$"""{"messages":{{Messages}},"continue_final_message":true,"add_generation_prompt":false}""")));
        var chat = await ReadJson(await client.PostAsync("/v1/chat/completions", JsonBody($$"""{"messages":{{Messages}},"continue_final_message":true,"add_generation_prompt":false,"max_tokens":6,"temperature":0}""")));
        var raw = await ReadJson(await client.PostAsync("/v1/completions", JsonBody($$"""{"prompt":{{ids.GetProperty("tokens")}},"max_tokens":6,"temperature":0}""")));
        Assert.Equal(ids.GetProperty("count").GetInt32(), chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(raw.GetProperty("choices")[0].GetProperty("text").GetString(), chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        // The prompt stops inside the model's turn: no end of turn after the prefix (id 107), none opened after it (106).
        var tokens = ids.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToList();
        Assert.NotEqual(107, tokens[^1]);
        Assert.Equal(2, tokens.Count(t => t == 106));

        foreach (var (body, param) in new[]
                 {
                     ($$"""{"messages":{{Messages}},"continue_final_message":true,"add_generation_prompt":true}""", "add_generation_prompt"),
                     ("""{"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false}""", "add_generation_prompt"),
                     ("""{"messages":[{"role":"user","content":"x"}],"continue_final_message":true}""", "messages"),
                     ($$$"""{"messages":{{{Messages}}},"continue_final_message":true,"response_format":{"type":"json_object"}}""", "continue_final_message"),
                 })
        {
            var r = await client.PostAsync("/v1/chat/completions", JsonBody(body));
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal(param, (await ReadJson(r)).GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task Asking_for_text_output_only_is_served()
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"modalities":["text"],"audio":null}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    [Fact]
    public async Task Chat_logprobs_come_per_token_with_alternatives()
    {
        var client = await server.ReadyClientAsync();
        var body = await ReadJson(await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"logprobs":true,"top_logprobs":3,"temperature":0}""")));
        var content = body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content");
        Assert.Equal(4, content.GetArrayLength());
        foreach (var t in content.EnumerateArray())
        {
            Assert.True(t.GetProperty("logprob").GetSingle() <= 0);
            Assert.Equal(3, t.GetProperty("top_logprobs").GetArrayLength());
            Assert.Equal(t.GetProperty("token").GetString(), t.GetProperty("top_logprobs")[0].GetProperty("token").GetString());   // greedy
        }
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip()
    {
        var client = await server.ReadyClientAsync();
        var t = await ReadJson(await client.PostAsync("/tokenize", JsonBody("""{"prompt":"Hello world"}""")));
        var ids = t.GetProperty("tokens").EnumerateArray().Select(x => x.GetInt32()).ToList();
        Assert.Equal(2, ids[0]);   // BOS
        Assert.Equal(ids.Count, t.GetProperty("count").GetInt32());
        var d = await ReadJson(await client.PostAsync("/detokenize", JsonBody(JsonSerializer.Serialize(new { tokens = ids }))));
        Assert.Equal("Hello world", d.GetProperty("prompt").GetString());
        var chat = await ReadJson(await client.PostAsync("/tokenize", JsonBody("""{"messages":[{"role":"user","content":"Hi"}]}""")));
        Assert.Equal([2, 106], chat.GetProperty("tokens").EnumerateArray().Take(2).Select(x => x.GetInt32()));
    }

    [Theory]
    [InlineData("""{"role":"assistant","content":[{"type":"refusal","refusal":"I cannot help with that."}]}""")]
    [InlineData("""{"role":"assistant","content":null,"refusal":"I cannot help with that."}""")]
    public async Task An_earlier_refusal_sent_back_is_the_assistants_text(string refused)
    {
        // OpenAI's clients send an earlier answer back as it came; before, a refusal part was a 400
        // ("only text content is supported") and a refusal field an empty turn.
        var client = await server.ReadyClientAsync();
        async Task<string> Tokens(string assistant) => (await ReadJson(await client.PostAsync("/tokenize",
            JsonBody($$"""{"messages":[{"role":"user","content":"Hi"},{{assistant}},{"role":"user","content":"Why?"}]}""")))).GetProperty("tokens").ToString();
        Assert.Equal(await Tokens("""{"role":"assistant","content":"I cannot help with that."}"""), await Tokens(refused));
        var r = await client.PostAsync("/v1/chat/completions", JsonBody($$"""{"messages":[{"role":"user","content":"Hi"},{{refused}},{"role":"user","content":"Why?"}],"max_tokens":2}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    [Fact]
    public async Task Health_and_swagger_are_served()
    {
        var client = await server.ReadyClientAsync();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
        var swagger = await ReadJson(await client.GetAsync("/swagger/v1/swagger.json"));
        var paths = swagger.GetProperty("paths");
        Assert.True(paths.TryGetProperty("/v1/chat/completions", out _));
        Assert.True(paths.TryGetProperty("/v1/completions", out _));
        Assert.True(paths.TryGetProperty("/v1/responses", out var responses) && responses.TryGetProperty("post", out _));
        Assert.True(paths.TryGetProperty("/v1/responses/{id}", out var one) && one.TryGetProperty("get", out _) && one.TryGetProperty("delete", out _));
        Assert.True(paths.TryGetProperty("/v1/responses/{id}/input_items", out _));
        Assert.Contains("ChatCompletionRequest", swagger.GetProperty("components").GetProperty("schemas").ToString());
        Assert.Contains("CreateResponseRequest", swagger.GetProperty("components").GetProperty("schemas").ToString());
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/swagger/index.html")).StatusCode);
    }
}

public class ChoicesStreamingTests(DemoServer server) : IClassFixture<DemoServer>
{
    [Fact]
    public async Task Several_choices_stream_with_their_own_index_and_finish()
    {
        var client = await server.ReadyClientAsync();
        var raw = await (await client.PostAsync("/v1/chat/completions", JsonBody("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"n":3,"stream":true,"seed":5,"logit_bias":{"1":-100,"107":-100}}"""))).Content.ReadAsStringAsync();
        var chunks = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]")
            .Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")).Where(c => c.GetArrayLength() > 0).Select(c => c[0]).ToList();
        for (int i = 0; i < 3; i++)
        {
            var mine = chunks.Where(c => c.GetProperty("index").GetInt32() == i).ToList();
            Assert.Equal("assistant", mine[0].GetProperty("delta").GetProperty("role").GetString());
            Assert.Equal("length", mine[^1].GetProperty("finish_reason").GetString());
        }
        Assert.EndsWith("data: [DONE]\n\n", raw);
    }
}
