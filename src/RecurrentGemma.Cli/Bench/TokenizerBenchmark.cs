using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using RecurrentGemma.Text;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// Encoding and decoding speed on ~1 MB of mixed text (prose, code, JSON, CJK, emoji, whitespace
/// runs…: the Gemma tokenizer fixture's strings, repeated in a seeded shuffle).
/// </summary>
public static class TokenizerBenchmark
{
    public static string Run(string tokenizerPath, string corpusPath, TextWriter progress)
    {
        var tok = GemmaTokenizer.FromFile(tokenizerPath);
        var texts = File.ReadLines(corpusPath).Where(l => l.Trim().Length > 0)
            .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("text").GetString()!).ToList();
        var rng = new Random(42);
        var sb = new StringBuilder();
        while (Encoding.UTF8.GetByteCount(sb.ToString()) < 1_000_000 - 2000)
            sb.Append(texts[rng.Next(texts.Count)]).Append('\n');
        var corpus = sb.ToString();
        var lines = corpus.Split('\n');
        int bytes = Encoding.UTF8.GetByteCount(corpus);
        progress.WriteLine($"[bench] tokenizer: {bytes} bytes, {lines.Length} lines");

        int tokens = tok.Encode(corpus).Count;
        double Best(Action a) { a(); return Enumerable.Range(0, 3).Min(_ => { var c = Stopwatch.StartNew(); a(); return c.Elapsed.TotalSeconds; }); }
        double whole = Best(() => tok.Encode(corpus));
        double perLine = Best(() => { foreach (var l in lines) tok.Encode(l); });
        double exact = Best(() => tok.EncodeExactOnly(corpus));
        var ids = tok.Encode(corpus);
        double decode = Best(() => tok.Decode(ids));
        double stream = Best(() => { var d = tok.CreateDetokenizer(); foreach (var id in ids) d.Push(id); d.Flush(); });
        bool exactAgrees = tok.EncodeExactOnly(corpus).SequenceEqual(ids);
        progress.WriteLine($"[bench] encode {tokens / whole:F0} tok/s; exact path only {tokens / exact:F0} tok/s; decode {tokens / decode:F0} tok/s");

        var ci = CultureInfo.InvariantCulture;
        var r = new StringBuilder();
        r.AppendLine("## Tokenizer (issue #3): encode and decode speed");
        r.AppendLine();
        r.AppendLine(ci, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite tokenizer --out docs/benchmarks.md`  ");
        r.AppendLine(ci, $"Corpus: {bytes:N0} bytes of mixed text ({lines.Length:N0} lines from tests/fixtures/gemma-tokenizer/cases.jsonl, seeded shuffle) → {tokens:N0} tokens; Gemma's 256k vocabulary; best of 3; {DateTime.UtcNow:yyyy-MM-dd}.");
        r.AppendLine();
        r.AppendLine("| operation | time | tokens/s |");
        r.AppendLine("|---|---|---|");
        r.AppendLine(ci, $"| encode, whole text (ML.Tokenizers + exact path where ties overlap) | {whole * 1000:F0} ms | {tokens / whole:N0} |");
        r.AppendLine(ci, $"| encode, line by line | {perLine * 1000:F0} ms | {tokens / perLine:N0} |");
        r.AppendLine(ci, $"| encode, exact BPE path only (for comparison; gives the same ids: {exactAgrees}) | {exact * 1000:F0} ms | {tokens / exact:N0} |");
        r.AppendLine(ci, $"| decode | {decode * 1000:F0} ms | {tokens / decode:N0} |");
        r.AppendLine(ci, $"| streaming decode, id by id | {stream * 1000:F0} ms | {tokens / stream:N0} |");
        return r.ToString();
    }
}
