using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using RecurrentGemma.Engine;
using RecurrentGemma.Inference;
using RecurrentGemma.Inference.Constraints;
using RecurrentGemma.Model;
using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Text;
using static TorchSharp.torch;

namespace RecurrentGemma.Bench;

/// <summary>
/// Decode throughput of 16 concurrent streams with and without a JSON-schema constraint, on a
/// model of the demo's shape over Gemma's real 256k vocabulary (so a step is cheap and the masks
/// weigh as much as they ever will relative to it).
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --constrained [--out docs/benchmarks.md]
/// </summary>
public static class ConstrainedThroughput
{
    const string Schema = """{"type":"object","properties":{"name":{"type":"string","maxLength":24},"age":{"type":"integer","minimum":0,"maximum":120},"city":{"type":"string"},"tags":{"type":"array","items":{"type":"string","maxLength":10},"maxItems":4}},"required":["name","age","city","tags"],"additionalProperties":false}""";

    public static async Task<string> RunAsync(TextWriter progress)
    {
        var tok = GemmaTokenizer.FromFile(Path.Combine(FindRoot(), "tests", "fixtures", "gemma-tokenizer", "tokenizer.model"));
        var config = ModelHost.DemoConfig(tok.VocabSize);
        using var model = new GriffinForCausalLM(config, ScalarType.Float32, CPU);
        RandomWeights.Initialize(model, 1);
        await using var engine = new EngineClient(model, new EngineOptions { MaxSlots = 20, MaxRunningSequences = 16, ParkFinishedStates = false });
        var service = new InferenceService(engine, tok, "bench");
        var fourFields = new OutputFormat(OutputFormatKind.JsonSchema, JsonDocument.Parse(Schema).RootElement, Strict: true);
        // A document that cannot be complete within 64 tokens: every constrained row does the same
        // work as a free one (the four-field documents end early, leaving the batch smaller).
        var longText = new OutputFormat(OutputFormatKind.JsonSchema,
            JsonDocument.Parse("""{"type":"object","properties":{"notes":{"type":"string","minLength":1000}},"required":["notes"],"additionalProperties":false}""").RootElement, Strict: true);

        async Task<(double TokensPerSecond, int Tokens)> Round(OutputFormat? format, int round)
        {
            var clock = Stopwatch.StartNew();
            var usages = await Task.WhenAll(Enumerable.Range(0, 16).Select(async i =>
            {
                UsageReport? usage = null;
                await foreach (var e in service.GenerateAsync(new TextGenerationRequest
                {
                    Prompt = $"Person {i}:", MaxTokens = 64, Sampling = new SamplingParams { Temperature = 1, Seed = round * 100 + i },
                    Format = format,
                }))
                    if (e is UsageReport u) usage = u;
                return usage!.CompletionTokens;
            }));
            int tokens = usages.Sum();
            return (tokens / clock.Elapsed.TotalSeconds, tokens);
        }

        await Round(null, 99);   // warm-up, every path
        await Round(fourFields, 99);
        await Round(longText, 99);
        var free = new List<double>();
        var rates = new[] { new List<double>(), new List<double>() };
        int freeTokens = 0;
        var tokens = new int[2];
        for (int round = 0; round < 5; round++)
        {
            var a = await Round(null, round); free.Add(a.TokensPerSecond); freeTokens += a.Tokens;
            var b = await Round(fourFields, round); rates[0].Add(b.TokensPerSecond); tokens[0] += b.Tokens;
            var c = await Round(longText, round); rates[1].Add(c.TokensPerSecond); tokens[1] += c.Tokens;
            progress.WriteLine($"[bench] round {round}: free {a.TokensPerSecond:F0} tok/s, four fields {b.TokensPerSecond:F0}, long text {c.TokensPerSecond:F0}");
        }
        double Median(List<double> xs) { var s = xs.Order().ToList(); return s[s.Count / 2]; }
        double f = Median(free);
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Structured outputs (issue #11): engine throughput at 16 constrained streams");
        sb.AppendLine();
        sb.AppendLine("Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --constrained --out docs/benchmarks.md`  ");
        sb.AppendLine(ci, $"Model: the demo's shape (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, f32, random weights) over Gemma's {tok.VocabSize}-id vocabulary, so a decode step is cheap and the masks weigh as much as they can. 16 concurrent requests, up to 64 new tokens each, temperature 1. Constrained: a strict JSON schema with four fields (strings, an integer range, an array), whose documents often end before 64 tokens — the batch then shrinks, which lowers tokens/s without any masking cost — and a one-field document that cannot end within 64 tokens (a string of at least 1 000 characters), so that constrained and free rows do the same work. Medians of 5 rounds (ranges); {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}.");
        sb.AppendLine();
        sb.AppendLine("| constrained by | free tok/s | constrained tok/s | ratio | tokens (free / constrained, all rounds) |");
        sb.AppendLine("|---|---|---|---|---|");
        string[] names = ["four fields (ends early)", "long text (equal work)"];
        for (int k = 0; k < 2; k++)
        {
            double c = Median(rates[k]);
            sb.AppendLine(ci, $"| {names[k]} | {f:F0} (range {free.Min():F0}–{free.Max():F0}) | {c:F0} (range {rates[k].Min():F0}–{rates[k].Max():F0}) | **{c / f:F2}** | {freeTokens} / {tokens[k]} |");
        }
        sb.AppendLine();
        sb.AppendLine("Goal: ratio ≥ 0.9.");
        return sb.ToString();
    }

    static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "RecurrentGemma.Server.sln"))) dir = dir.Parent;
        return dir?.FullName ?? Directory.GetCurrentDirectory();
    }
}
