using System.Net;
using System.Text;
using System.Text.Json;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>Every bad request gets OpenAI's error envelope with the right status, type and param.</summary>
public class BadRequestTests(DemoServer server) : IClassFixture<DemoServer>
{
    const string U = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";

    public static TheoryData<string, string, string, int, string, string?> Cases => new()
    {
        // path, content type, body, status, error.type, error.param
        { "/v1/chat/completions", "application/json", "{not json", 400, "invalid_request_error", null },
        { "/v1/chat/completions", "application/json", "", 400, "invalid_request_error", null },
        { "/v1/chat/completions", "application/json", "[]", 400, "invalid_request_error", null },
        { "/v1/chat/completions", "text/plain", "{" + U + "}", 415, "invalid_request_error", null },
        { "/v1/chat/completions", "application/json", "{}", 400, "invalid_request_error", "messages" },
        { "/v1/chat/completions", "application/json", """{"messages":[]}""", 400, "invalid_request_error", "messages" },
        { "/v1/chat/completions", "application/json", """{"messages":"hi"}""", 400, "invalid_request_error", "messages" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"content":"hi"}]}""", 400, "invalid_request_error", "messages[0].role" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"wizard","content":"hi"}]}""", 400, "invalid_request_error", "messages[0].role" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":""}]}""", 400, "invalid_request_error", "messages[0].content" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":42}]}""", 400, "invalid_request_error", "messages[0].content" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "invalid_request_error", "messages[0].content[0].type" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"tool","content":"42"}]}""", 400, "invalid_request_error", "messages[0].tool_call_id" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}""", 400, "invalid_request_error", "messages" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","model":"gpt-4o"}""", 404, "invalid_request_error", "model" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","temperature":2.5}""", 400, "invalid_request_error", "temperature" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","temperature":"hot"}""", 400, "invalid_request_error", "temperature" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","top_p":0}""", 400, "invalid_request_error", "top_p" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","top_p":1.5}""", 400, "invalid_request_error", "top_p" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","n":9}""", 400, "invalid_request_error", "n" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","n":0}""", 400, "invalid_request_error", "n" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","max_tokens":0}""", 400, "invalid_request_error", "max_tokens" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","max_tokens":100000}""", 400, "invalid_request_error", "max_tokens" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","max_completion_tokens":-1}""", 400, "invalid_request_error", "max_completion_tokens" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stop":["a","b","c","d","e"]}""", 400, "invalid_request_error", "stop" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stop":42}""", 400, "invalid_request_error", "stop" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","presence_penalty":3}""", 400, "invalid_request_error", "presence_penalty" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","frequency_penalty":-2.5}""", 400, "invalid_request_error", "frequency_penalty" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","logit_bias":{"abc":1}}""", 400, "invalid_request_error", "logit_bias" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","logit_bias":{"5":150}}""", 400, "invalid_request_error", "logit_bias" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","top_logprobs":21,"logprobs":true}""", 400, "invalid_request_error", "top_logprobs" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","top_logprobs":2}""", 400, "invalid_request_error", "top_logprobs" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stream_options":{"include_usage":true}}""", 400, "invalid_request_error", "stream_options" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"xml"}}""", 400, "invalid_request_error", "response_format.type" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema"}}""", 400, "invalid_request_error", "response_format.json_schema" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}""", 400, "invalid_request_error", "response_format.json_schema.name" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema","json_schema":{"name":"bad name!","schema":{"type":"object"}}}}""", 400, "invalid_request_error", "response_format.json_schema.name" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":[1]}}}""", 400, "invalid_request_error", "response_format.json_schema.schema" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string","pattern":"(?=x)"}}}}}}""", 400, "invalid_request_error", "response_format.json_schema.schema.properties.a.pattern" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"$ref":"#/$defs/missing"}}}}""", 400, "invalid_request_error", "response_format.json_schema.schema.$ref" },
        { "/v1/completions", "application/json", """{"prompt":"x","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","maxLength":999999}}}}""", 400, "invalid_request_error", "response_format.json_schema.schema.maxLength" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]}}}}""", 400, "invalid_request_error", "response_format.json_schema.schema" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"f","parameters":{"$ref":"#"}}}]}""", 400, "invalid_request_error", "tools[0].function.parameters" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"bad name"}}]}""", 400, "invalid_request_error", "tools[0].function.name" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]}""", 400, "invalid_request_error", "tools[1].function.name" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"retrieval"}]}""", 400, "invalid_request_error", "tools[0].type" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]}""", 400, "invalid_request_error", "tools[0].function.parameters" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"f","strict":true,"parameters":{"type":"object","properties":{"x":{"type":"string","pattern":"(a)\\1"}}}}}]}""", 400, "invalid_request_error", "tools[0].function.parameters.properties.x.pattern" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""", 400, "invalid_request_error", "tool_choice" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":{"type":"x"}}}""", 400, "invalid_request_error", "tool_choice.type" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tools":[],"tool_choice":"auto"}""", 400, "invalid_request_error", "tools" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","tool_choice":"required"}""", 400, "invalid_request_error", "tool_choice" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","functions":[{"name":"f"}],"function_call":{"name":"g"}}""", 400, "invalid_request_error", "function_call" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_2","content":"x"}]}""", 400, "invalid_request_error", "messages[2].tool_call_id" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]},{"role":"tool","tool_call_id":"c","content":"x"}]}""", 400, "invalid_request_error", "messages[1].tool_calls[0].function.arguments" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","top_k":-5}""", 400, "invalid_request_error", "top_k" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","min_p":1.5}""", 400, "invalid_request_error", "min_p" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","repetition_penalty":0}""", 400, "invalid_request_error", "repetition_penalty" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stream":"yes"}""", 400, "invalid_request_error", "stream" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","seed":"abc"}""", 400, "invalid_request_error", "seed" },
        { "/v1/completions", "application/json", "{}", 400, "invalid_request_error", "prompt" },
        { "/v1/completions", "application/json", """{"prompt":[]}""", 400, "invalid_request_error", "prompt" },
        { "/v1/completions", "application/json", """{"prompt":[1,"a"]}""", 400, "invalid_request_error", "prompt" },
        { "/v1/completions", "application/json", """{"prompt":[{"a":1}]}""", 400, "invalid_request_error", "prompt" },
        { "/v1/completions", "application/json", """{"prompt":[2,-3]}""", 400, "invalid_request_error", "prompt[1]" },
        { "/v1/completions", "application/json", """{"prompt":[2,1.5]}""", 400, "invalid_request_error", "prompt[1]" },
        { "/v1/completions", "application/json", """{"prompt":[99999999]}""", 400, "invalid_request_error", "prompt[0]" },
        { "/v1/completions", "application/json", """{"prompt":[[2,3],[]]}""", 400, "invalid_request_error", "prompt[1]" },
        { "/v1/completions", "application/json", """{"prompt":[[2,3],[2,4096]]}""", 400, "invalid_request_error", "prompt[1][1]" },
        { "/v1/completions", "application/json", """{"prompt":[[2,3],["a"]]}""", 400, "invalid_request_error", "prompt[1][0]" },
        { "/v1/completions", "application/json", """{"prompt":"x","suffix":"y"}""", 400, "invalid_request_error", "suffix" },
        { "/v1/completions", "application/json", """{"prompt":"x","max_tokens":4,"min_tokens":5}""", 400, "invalid_request_error", "min_tokens" },
        { "/v1/completions", "application/json", """{"prompt":"x","min_tokens":-1}""", 400, "invalid_request_error", "min_tokens" },
        { "/v1/completions", "application/json", """{"prompt":"x","stop_token_ids":[3,-1]}""", 400, "invalid_request_error", "stop_token_ids[1]" },
        { "/v1/completions", "application/json", """{"prompt":"x","stop_token_ids":"5"}""", 400, "invalid_request_error", "stop_token_ids" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stop_token_ids":[4096]}""", 400, "invalid_request_error", "stop_token_ids[0]" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","ignore_eos":"yes"}""", 400, "invalid_request_error", "ignore_eos" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","modalities":["text","audio"]}""", 400, "invalid_request_error", "modalities" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","audio":{"voice":"alloy","format":"wav"}}""", 400, "invalid_request_error", "audio" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","web_search_options":{}}""", 400, "invalid_request_error", "web_search_options" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","ignore_eos":true,"response_format":{"type":"json_object"}}""", 400, "invalid_request_error", "ignore_eos" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","min_tokens":2,"tools":[{"type":"function","function":{"name":"f"}}]}""", 400, "invalid_request_error", "min_tokens" },
        { "/v1/completions", "application/json", """{"prompt":"x","logprobs":30}""", 400, "invalid_request_error", "logprobs" },
        { "/v1/completions", "application/json", """{"prompt":"x","n":3,"best_of":2}""", 400, "invalid_request_error", "best_of" },
        { "/v1/completions", "application/json", """{"prompt":"x","best_of":3,"stream":true}""", 400, "invalid_request_error", "best_of" },
        { "/v1/completions", "application/json", """{"prompt":"x","best_of":100}""", 400, "invalid_request_error", "best_of" },
        { "/v1/completions", "application/json", """{"prompt":"x","use_beam_search":true}""", 400, "invalid_request_error", "use_beam_search" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","use_beam_search":true}""", 400, "invalid_request_error", "use_beam_search" },
        { "/detokenize", "application/json", """{"tokens":[999999]}""", 400, "invalid_request_error", "tokens" },
        { "/tokenize", "application/json", """{}""", 400, "invalid_request_error", "prompt" },
        // Byte-level defects, found once by the request reader for every field:
        { "/v1/chat/completions", "application/json", """{"messages":[null]}""", 400, "invalid_request_error", "messages[0]" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":"hi"},null]}""", 400, "invalid_request_error", "messages[1]" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":[null]}]}""", 400, "invalid_request_error", "messages[0].content[0]" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":"a\ud800b"}]}""", 400, "invalid_request_error", "messages[0].content" },
        { "/v1/chat/completions", "application/json", """{"messages":[{"role":"user","content":[{"type":"text","text":"\udc00"}]}]}""", 400, "invalid_request_error", "messages[0].content[0].text" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stop":[null]}""", 400, "invalid_request_error", "stop[0]" },
        { "/v1/chat/completions", "application/json", "{" + U + ""","stop":["ok","\ud83d"]}""", 400, "invalid_request_error", "stop[1]" },
        { "/v1/completions", "application/json", """{"prompt":[null]}""", 400, "invalid_request_error", "prompt[0]" },
        { "/v1/completions", "application/json", """{"prompt":"\ud800\u0041"}""", 400, "invalid_request_error", "prompt" },
        { "/tokenize", "application/json", """{"prompt":"\udfff"}""", 400, "invalid_request_error", "prompt" },
    };

    [Theory, MemberData(nameof(Cases))]
    public async Task Bad_requests_get_the_right_status_type_and_param(string path, string contentType, string body, int status, string type, string? param)
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync(path, new StringContent(body, Encoding.UTF8, contentType));
        Assert.Equal(status, (int)r.StatusCode);
        Assert.StartsWith("application/json", r.Content.Headers.ContentType!.ToString());
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.DoesNotContain("   at ", error.GetProperty("message").GetString());   // never a stack trace
    }

    [Theory]
    [InlineData("/v1/completions", "text/plain", "hi", 415, "Content-Type must be application/json, got 'text/plain; charset=utf-8'.")]
    [InlineData("/v1/responses", "application/xml", "<a/>", 415, "Content-Type must be application/json, got 'application/xml; charset=utf-8'.")]
    [InlineData("/v1/chat/completions", "application/json", "[1]", 400, "The request body must be a JSON object, not an array.")]
    [InlineData("/v1/completions", "application/json", " 42", 400, "The request body must be a JSON object, not a number.")]
    [InlineData("/tokenize", "application/json", "\"x\"", 400, "The request body must be a JSON object, not a string.")]
    [InlineData("/v1/responses", "application/json", "true", 400, "The request body must be a JSON object, not a boolean.")]
    public async Task The_message_says_what_was_wrong_in_the_clients_terms(string path, string contentType, string body, int status, string message)
    {
        // Before: "HTTP 415." for a type refused by routing, and the server's own type names
        // ("could not be converted to RecurrentGemma.Server.OpenAi.ChatCompletionRequest").
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync(path, new StringContent(body, Encoding.UTF8, contentType));
        Assert.Equal(status, (int)r.StatusCode);
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.Equal(message, error.GetProperty("message").GetString());
        if (status == 415) Assert.Equal("unsupported_media_type", error.GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("abc", "limit must be an integer between 1 and 100, got 'abc'.")]
    [InlineData("0", "limit must be between 1 and 100, got 0.")]
    [InlineData("99999999999", "limit must be an integer between 1 and 100, got '99999999999'.")]
    public async Task A_query_parameter_that_is_no_number_is_a_400_naming_it(string limit, string message)
    {
        var client = await server.ReadyClientAsync();
        var r = await client.GetAsync($"/v1/responses/resp_x/input_items?limit={limit}");
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.Equal("limit", error.GetProperty("param").GetString());
        Assert.Equal(message, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Unknown_routes_and_wrong_methods_get_the_envelope()
    {
        var client = await server.ReadyClientAsync();
        var notFound = await client.GetAsync("/v1/engines");
        Assert.Equal(HttpStatusCode.NotFound, notFound.StatusCode);
        Assert.Equal("not_found", (await ReadJson(notFound)).GetProperty("error").GetProperty("code").GetString());
        var wrongMethod = await client.GetAsync("/v1/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, wrongMethod.StatusCode);
        Assert.Equal("invalid_request_error", (await ReadJson(wrongMethod)).GetProperty("error").GetProperty("type").GetString());
    }

    [Theory]
    [InlineData("messages[0].content", "{\"messages\":[{\"role\":\"user\",\"content\":\"a", "b\"}]}")]
    [InlineData("messages[0].role", "{\"messages\":[{\"role\":\"us", "er\",\"content\":\"x\"}]}")]
    [InlineData("prompt[1]", "{\"prompt\":[\"fine\",\"x", "\"]}")]
    [InlineData("stop", "{\"prompt\":\"x\",\"stop\":\"", "\"}")]
    public async Task Invalid_utf8_inside_a_string_is_400_naming_the_field(string param, string before, string after)
    {
        var client = await server.ReadyClientAsync();
        var path = param.StartsWith("messages") ? "/v1/chat/completions" : "/v1/completions";
        foreach (var bad in new byte[][] { [0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xC0, 0xAF] })
        {
            var body = new ByteArrayContent([.. Encoding.UTF8.GetBytes(before), .. bad, .. Encoding.UTF8.GetBytes(after)]);
            body.Headers.ContentType = new("application/json");
            var r = await client.PostAsync(path, body);
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            var error = (await ReadJson(r)).GetProperty("error");
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.Contains("UTF-8", error.GetProperty("message").GetString());
        }
    }

    [Theory]
    [InlineData("gzip")]
    [InlineData("deflate")]
    [InlineData("x-custom")]
    public async Task A_content_encoding_the_server_does_not_decode_is_415(string encoding)
    {
        var client = await server.ReadyClientAsync();
        var body = JsonBody("{" + U + ""","max_tokens":1}""");
        body.Headers.ContentEncoding.Add(encoding);
        var r = await client.PostAsync("/v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, r.StatusCode);
        Assert.Contains("Content-Encoding", (await ReadJson(r)).GetProperty("error").GetProperty("message").GetString());
        var identity = JsonBody("{" + U + ""","max_tokens":1}""");
        identity.Headers.ContentEncoding.Add("identity");
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/chat/completions", identity)).StatusCode);
    }

    [Fact]
    public async Task A_body_over_the_limit_is_413()
    {
        var client = await server.ReadyClientAsync();
        var huge = "{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('a', 5 * 1024 * 1024) + "\"}]}";
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(huge));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        Assert.Equal("request_too_large", (await ReadJson(r)).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Unknown_fields_are_ignored()
    {
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync("/v1/chat/completions", JsonBody("{" + U + ""","max_tokens":2,"frobnicate":true,"user":"u1","response_format":{"type":"text"}}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }
}

public class ContextLengthTests
{
    [Theory]
    [InlineData("/v1/chat/completions", """{"messages":[{"role":"user","content":"a rather long message for a tiny limit"}]}""", "messages")]
    [InlineData("/v1/completions", """{"prompt":"a rather long prompt for a tiny limit"}""", "prompt")]
    public async Task A_prompt_over_the_limit_is_context_length_exceeded_naming_the_field(string path, string body, string param)
    {
        await using var server = new ServerFactory().With("Engine:MaxPromptTokens", "6");
        var client = await server.ReadyClientAsync();
        var r = await client.PostAsync(path, ServerFactory.JsonBody(body));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, r.StatusCode);
        var error = (await ServerFactory.ReadJson(r)).GetProperty("error");
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Contains("maximum prompt length is 6 tokens", error.GetProperty("message").GetString());
    }
}
