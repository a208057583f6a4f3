using System.Text.Json;


namespace RecurrentGemma.Text.Tests;

/// <summary>One expected encoding from a fixture: SentencePiece 0.1.97's ids and decode.</summary>
public sealed record TokenizerCase(string Name, string Text, int[] Ids, string Decoded, bool HasLibraryMismatch);

/// <summary>The tokenizer fixtures copied from shared/ into tests/fixtures/ (see their READMEs).</summary>
public static class TokenizerFixtures
{
    public static string Root { get; } = FindRoot();

    static readonly Lazy<GemmaTokenizer> GemmaLazy = new(() => GemmaTokenizer.FromFile(Path.Combine(Root, "gemma-tokenizer", "tokenizer.model")));
    static readonly Lazy<GemmaTokenizer> TinyLazy = new(() => GemmaTokenizer.FromFile(Path.Combine(Root, "tokenizer", "tokenizer.model")));

    /// <summary>Gemma's real 256k vocabulary (a faithful reconstruction).</summary>
    public static GemmaTokenizer Gemma => GemmaLazy.Value;
    /// <summary>A 1500-piece spm_train model with Gemma's special ids.</summary>
    public static GemmaTokenizer Tiny => TinyLazy.Value;

    public static IReadOnlyList<TokenizerCase> GemmaCases { get; } = File.ReadLines(Path.Combine(Root, "gemma-tokenizer", "cases.jsonl"))
        .Where(l => l.Trim().Length > 0)
        .Select(l =>
        {
            using var doc = JsonDocument.Parse(l);
            var r = doc.RootElement;
            return new TokenizerCase(r.GetProperty("name").GetString()!, r.GetProperty("text").GetString()!,
                r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                r.GetProperty("decoded").GetString()!, r.TryGetProperty("mltok_2_0_1_ids", out _));
        }).ToList();

    public static IReadOnlyList<TokenizerCase> TinyCases { get; } = LoadTiny();

    static List<TokenizerCase> LoadTiny()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "tokenizer", "cases.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select((r, i) => new TokenizerCase($"tiny-{i}",
            r.GetProperty("text").GetString()!, r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            r.GetProperty("decoded").GetString()!, false)).ToList();
    }

    /// <summary>(ids, expected decode) pairs: decode_cases.jsonl and the tiny fixture's decode_only.</summary>
    public static IEnumerable<(string Name, GemmaTokenizer Tokenizer, int[] Ids, string Decoded)> DecodeCases()
    {
        foreach (var l in File.ReadLines(Path.Combine(Root, "gemma-tokenizer", "decode_cases.jsonl")).Where(l => l.Trim().Length > 0))
        {
            using var doc = JsonDocument.Parse(l);
            var r = doc.RootElement;
            yield return (r.GetProperty("name").GetString()!, Gemma, r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(), r.GetProperty("decoded").GetString()!);
        }
        using var tiny = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "tokenizer", "cases.json")));
        foreach (var r in tiny.RootElement.GetProperty("decode_only").EnumerateArray())
            yield return (r.GetProperty("what").GetString()!, Tiny, r.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(), r.GetProperty("decoded").GetString()!);
    }

    static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "RecurrentGemma.Server.sln"))) dir = dir.Parent;
        return Path.Combine(dir?.FullName ?? throw new InvalidOperationException("repository root not found"), "tests", "fixtures");
    }
}
