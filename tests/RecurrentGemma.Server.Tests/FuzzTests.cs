using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// Seeded fuzzing of every endpoint: valid requests are mutated (truncated at every kind of
/// position, invalid UTF-8 injected into every string, every value replaced by null, wrong types,
/// huge numbers and deep nesting, duplicated keys, odd content types and encodings). Each answer
/// must be a 2xx or a 4xx in OpenAI's envelope — never a 5xx, never a server_error inside a
/// stream — and the server must still answer a valid request afterwards.
/// </summary>
public class FuzzTests(DemoServer server, ITestOutputHelper output) : IClassFixture<DemoServer>
{
    const int Seed = 20261202;

    static readonly (string Path, string Body)[] Valid =
    [
        ("/v1/chat/completions", """{"model":"recurrentgemma-demo","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":2,"temperature":0.7,"top_p":0.9,"stop":["x","y"],"logit_bias":{"5":1.5},"logprobs":true,"top_logprobs":2,"seed":7,"n":1}"""),
        ("/v1/chat/completions", """{"messages":[{"role":"user","content":"hello there"}],"max_completion_tokens":2,"stream":true,"stream_options":{"include_usage":true},"session_id":"fuzz-1"}"""),
        ("/v1/completions", """{"model":"recurrentgemma-demo","prompt":["one","two"],"max_tokens":2,"logprobs":1,"echo":true,"stop":"z","top_k":5,"min_p":0.1,"repetition_penalty":1.1,"presence_penalty":0.5}"""),
        ("/v1/completions", """{"prompt":"stream me","max_tokens":2,"stream":true,"frequency_penalty":0.2}"""),
        ("/v1/responses", """{"model":"recurrentgemma-demo","input":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"instructions":"x","max_output_tokens":2,"temperature":0.7,"top_p":0.9,"metadata":{"a":"b"},"text":{"format":{"type":"json_object"}}}"""),
        ("/v1/responses", """{"input":"hello","max_output_tokens":2,"stream":true,"store":false,"tools":[{"type":"function","name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}],"tool_choice":"auto"}"""),
        ("/tokenize", """{"prompt":"hello world","add_special_tokens":false}"""),
        ("/tokenize", """{"messages":[{"role":"user","content":"hello"}]}"""),
        ("/detokenize", """{"tokens":[2,5,6,7]}"""),
    ];

    static readonly byte[][] BadUtf8 =
    [
        [0xFF], [0xC3], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82],
        "\\ud800"u8.ToArray(), "\\udc00x"u8.ToArray(), "\\ud800\\u0041"u8.ToArray(),
    ];

    static readonly string[] Replacements =
    [
        "null", "0", "-1", "1.5", "true", "\"\"", "\"text\"", "[]", "[null]", "{}", "[1,\"a\",null]",
        "1e309", "-1e308", "99999999999999999999999", "2147483648", "-2147483649", "1e-400", "NaN",
        new string('[', 200) + new string(']', 200), string.Concat(Enumerable.Repeat("{\"a\":", 100)) + "1" + new string('}', 100),
        "\"" + new string('z', 20000) + "\"",
    ];

    [Fact]
    public async Task Mutated_requests_never_get_a_5xx_and_the_server_keeps_serving()
    {
        var client = await server.ReadyClientAsync();
        client.Timeout = TimeSpan.FromSeconds(60);
        var cases = Cases(new Random(Seed)).ToList();
        Assert.True(cases.Count >= 1000, $"only {cases.Count} cases");

        var byStatus = new SortedDictionary<int, int>();
        var failures = new List<string>();
        foreach (var c in cases)
        {
            using var content = new ByteArrayContent(c.Body);
            content.Headers.ContentType = MediaTypeHeaderValue.Parse(c.ContentType);
            if (c.Encoding is not null) content.Headers.ContentEncoding.Add(c.Encoding);
            var r = await client.PostAsync(c.Path, content);
            int status = (int)r.StatusCode;
            byStatus[status] = byStatus.GetValueOrDefault(status) + 1;
            var text = await r.Content.ReadAsStringAsync();
            var problem = Check(status, r.Content.Headers.ContentType?.MediaType, text);
            if (problem is not null && failures.Count < 20) failures.Add($"{c.Name} → {status}: {problem}\n  body: {Show(c.Body)}\n  answer: {Show(text)}");
        }
        output.WriteLine($"{cases.Count} cases: " + string.Join(", ", byStatus.Select(kv => $"{kv.Key}×{kv.Value}")));
        Assert.True(failures.Count == 0, string.Join("\n", failures));

        var after = await client.PostAsync("/v1/chat/completions", ServerFactory.JsonBody("""{"messages":[{"role":"user","content":"still there?"}],"max_tokens":3}"""));
        Assert.Equal(System.Net.HttpStatusCode.OK, after.StatusCode);
        await server.Until(s => s.RunningSequences == 0 && s.QueuedRequests == 0 && s.SlotsUsed == 0);
    }

    /// <summary>Null when the answer is acceptable, else what is wrong with it.</summary>
    static string? Check(int status, string? mediaType, string text)
    {
        if (status >= 500) return "a server error";
        if (text.Contains("server_error")) return "a server_error inside the body";
        if (status is >= 200 and < 300) return null;
        if (status is < 400 or >= 500) return "unexpected status";
        try
        {
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            if (error.GetProperty("message").GetString() is not { Length: > 0 } m) return "empty message";
            if (m.Contains("   at ")) return "a stack trace in the message";
            if (error.GetProperty("type").ValueKind != JsonValueKind.String) return "no type";
            if (!error.TryGetProperty("param", out _) || !error.TryGetProperty("code", out _)) return "no param/code";
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return $"not OpenAI's envelope ({mediaType})";
        }
        return null;
    }

    static string Show(byte[] b) => Show(Encoding.UTF8.GetString(b));
    static string Show(string s) => s.Length > 300 ? s[..300] + "…" : s;

    sealed record Case(string Name, string Path, byte[] Body, string ContentType = "application/json", string? Encoding = null);

    static IEnumerable<Case> Cases(Random random)
    {
        foreach (var (path, body) in Valid)
        {
            var bytes = Encoding.UTF8.GetBytes(body);
            yield return new Case("valid", path, bytes);

            // Truncation: once after each distinct kind of character, plus random cuts.
            var seen = new HashSet<byte>();
            for (int i = 1; i < bytes.Length; i++)
                if (seen.Add(bytes[i - 1]) || random.NextDouble() < 0.05)
                    yield return new Case($"truncate@{i}", path, bytes[..i]);

            var root = JsonNode.Parse(body)!;
            var leaves = Paths(root).ToList();
            foreach (var (node, label) in leaves)
            {
                foreach (var replacement in Replacements)
                    if (random.NextDouble() < 0.6 || replacement == "null")
                        yield return new Case($"{label}={Show(replacement)[..Math.Min(20, replacement.Length)]}", path, Replace(root, node, replacement));
                if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
                    foreach (var bad in BadUtf8)
                        yield return new Case($"{label} bad utf8 {Convert.ToHexString(bad)}", path, Inject(root, node, bad));
            }

            // Invalid UTF-8 in a property name, duplicate keys, odd framing.
            yield return new Case("bad key", path, Concat("{\""u8.ToArray(), [0xFF, 0xFE], "\":1,"u8.ToArray(), bytes[1..]));
            foreach (var name in root.AsObject().Select(p => p.Key))
                yield return new Case($"duplicate {name}", path, Encoding.UTF8.GetBytes("{\"" + name + "\":" + Pick(random) + "," + body[1..]));
            yield return new Case("text/plain", path, bytes, "text/plain");
            yield return new Case("json charset latin1", path, bytes, "application/json; charset=iso-8859-1");
            yield return new Case("form", path, bytes, "application/x-www-form-urlencoded");
            yield return new Case("gzip", path, bytes, Encoding: "gzip");
            yield return new Case("br", path, bytes, Encoding: "br");
            yield return new Case("bom", path, Concat([0xEF, 0xBB, 0xBF], bytes));
            yield return new Case("trailing garbage", path, Concat(bytes, "}}"u8.ToArray()));
            yield return new Case("two documents", path, Concat(bytes, bytes));
            yield return new Case("utf16", path, Encoding.Unicode.GetBytes(body));
            yield return new Case("scalar", path, "42"u8.ToArray());
            yield return new Case("array", path, Encoding.UTF8.GetBytes("[" + body + "]"));

            // Random byte flips anywhere.
            for (int k = 0; k < 20; k++)
            {
                var copy = (byte[])bytes.Clone();
                for (int f = 0; f < 1 + random.Next(3); f++) copy[random.Next(copy.Length)] = (byte)random.Next(256);
                yield return new Case($"flip#{k}", path, copy);
            }
        }
    }

    static string Pick(Random random) => Replacements[random.Next(Replacements.Length - 3)];

    /// <summary>Every node below the root, with a readable label.</summary>
    static IEnumerable<(JsonNode Node, string Label)> Paths(JsonNode node, string label = "$")
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o)
                    if (v is not null)
                    {
                        yield return (v, $"{label}.{k}");
                        foreach (var x in Paths(v, $"{label}.{k}")) yield return x;
                    }
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++)
                    if (a[i] is { } v)
                    {
                        yield return (v, $"{label}[{i}]");
                        foreach (var x in Paths(v, $"{label}[{i}]")) yield return x;
                    }
                break;
        }
    }

    const string Marker = "\u0001MARK\u0001";

    /// <summary>The document with <paramref name="node"/> replaced by raw JSON text.</summary>
    static byte[] Replace(JsonNode root, JsonNode node, string raw)
    {
        var json = WithMarker(root, node, Marker);
        return Encoding.UTF8.GetBytes(json.Replace(JsonSerializer.Serialize(Marker), raw));
    }

    /// <summary>The document with raw bytes placed in the middle of a string value.</summary>
    static byte[] Inject(JsonNode root, JsonNode node, byte[] bad)
    {
        var text = node.GetValue<string>();
        var json = WithMarker(root, node, "\u0001L\u0001" + text + "\u0001R\u0001");
        var marker = JsonSerializer.Serialize("\u0001L\u0001" + text + "\u0001R\u0001");
        int at = json.IndexOf(marker, StringComparison.Ordinal);
        var before = Encoding.UTF8.GetBytes(json[..at] + "\"" + text[..(text.Length / 2)]);
        var after = Encoding.UTF8.GetBytes(text[(text.Length / 2)..] + "\"" + json[(at + marker.Length)..]);
        return Concat(before, bad, after);
    }

    static string WithMarker(JsonNode root, JsonNode node, string marker)
    {
        var copy = root.DeepClone();
        var target = copy.AsObject() is var _ ? Find(copy, node.GetPath()) : null;
        target!.ReplaceWith(marker);
        return copy.ToJsonString();
    }

    static JsonNode Find(JsonNode root, string path)
    {
        foreach (var candidate in All(root))
            if (candidate.GetPath() == path) return candidate;
        throw new InvalidOperationException(path);
    }

    static IEnumerable<JsonNode> All(JsonNode node)
    {
        yield return node;
        var children = node switch
        {
            JsonObject o => o.Select(p => p.Value),
            JsonArray a => a.AsEnumerable(),
            _ => [],
        };
        foreach (var c in children)
            if (c is not null)
                foreach (var x in All(c)) yield return x;
    }

    static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
