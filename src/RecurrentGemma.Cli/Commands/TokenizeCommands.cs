using System.Text.Json;
using RecurrentGemma.Text;

namespace RecurrentGemma.Cli.Commands;

/// <summary>
/// <c>rgemma tokenize</c>: JSON lines {"text": …} on stdin → {"ids": […]} (no BOS added).
/// <c>rgemma detokenize</c>: {"ids": […]} → {"text": …}. One output line per input line.
/// </summary>
static class TokenizeCommands
{
    public static int Tokenize(CliArgs args, TextReader stdin, TextWriter stdout)
    {
        var tokenizer = LoadTokenizer(args);
        args.EnsureAllRead();
        return EachLine(stdin, stdout, (doc, line) =>
        {
            if (!doc.RootElement.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"line {line}: expected {{\"text\": \"...\"}}");
            return JsonSerializer.Serialize(new { ids = tokenizer.Encode(text.GetString()!) });
        });
    }

    public static int Detokenize(CliArgs args, TextReader stdin, TextWriter stdout)
    {
        var tokenizer = LoadTokenizer(args);
        args.EnsureAllRead();
        return EachLine(stdin, stdout, (doc, line) =>
        {
            if (!doc.RootElement.TryGetProperty("ids", out var ids) || ids.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"line {line}: expected {{\"ids\": [...]}}");
            var list = ids.EnumerateArray().Select(x => x.TryGetInt32(out var v) ? v : throw new InvalidDataException($"line {line}: ids must be integers")).ToList();
            try { return JsonSerializer.Serialize(new { text = tokenizer.Decode(list) }, Json.Unescaped); }
            catch (ArgumentOutOfRangeException e) { throw new InvalidDataException($"line {line}: {e.Message.Split(" (Parameter")[0]}"); }
        });
    }

    static GemmaTokenizer LoadTokenizer(CliArgs args) => GemmaTokenizer.FromFile(args.Require("tokenizer"));

    static int EachLine(TextReader stdin, TextWriter stdout, Func<JsonDocument, int, string> map)
    {
        int n = 0;
        for (string? line; (line = stdin.ReadLine()) is not null;)
        {
            n++;
            if (line.Trim().Length == 0) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException e) { throw new InvalidDataException($"line {n}: not valid JSON ({e.Message})"); }
            using (doc) stdout.WriteLine(map(doc, n));
        }
        return 0;
    }
}

static class Json
{
    /// <summary>Readable output: non-ASCII text as itself, not \u escapes.</summary>
    public static readonly JsonSerializerOptions Unescaped = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
