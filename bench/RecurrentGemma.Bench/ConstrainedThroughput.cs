using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using RecurrentGemma.Cli.Bench;
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
        // A document that cannot be complete within 64 tokens: constrained and free rows do the same work.
        var longText = new OutputFormat(OutputFormatKind.JsonSchema,
            JsonDocument.Parse("""{"type":"object","properties":{"notes":{"type":"string","minLength":1000}},"required":["notes"],"additionalProperties":false}""").RootElement, Strict: true);

        // Closed loop: each of the 16 workers sends its next request as soon as the last one ends,
        // until it has its quota of tokens, so 16 streams stay running as on a busy server. A free
        // round replays the request lengths of the constrained round it is paired with (a
        // four-field document often ends before 64 tokens, so that round sends more, shorter
        // requests — more prompts to prefill, which is no cost of the masks).
        const int Quota = 192, Rounds = 7, Workers = 16;
        async Task<(double TokensPerSecond, List<int>[] Lengths)> Round(OutputFormat? format, int round, List<int>[]? replay)
        {
            var clock = Stopwatch.StartNew();
            var lengths = await Task.WhenAll(Enumerable.Range(0, Workers).Select(async i =>
            {
                var sent = new List<int>();
                for (int k = 0, produced = 0; replay is null ? produced < Quota : k < replay[i].Count; k++)
                {
                    UsageReport? usage = null;
                    await foreach (var e in service.GenerateAsync(new TextGenerationRequest
                    {
                        Prompt = $"Person {i}:", MaxTokens = replay?[i][k] ?? Math.Min(64, Quota - produced),
                        Sampling = new SamplingParams { Temperature = 1, Seed = round * 10_000 + i * 100 + k },
                        Format = format,
                    }))
                        if (e is UsageReport u) usage = u;
                    sent.Add(Math.Max(1, usage!.CompletionTokens));
                    produced += sent[^1];
                }
                return sent;
            }));
            return (lengths.Sum(l => l.Sum()) / clock.Elapsed.TotalSeconds, lengths);
        }

        OutputFormat[] formats = [fourFields, longText];
        foreach (var f in formats) await Round(null, 99, (await Round(f, 99, null)).Lengths);   // warm-up, every path
        var ratios = formats.Select(_ => new List<double>()).ToArray();
        var rates = formats.Select(_ => (Free: new List<double>(), Constrained: new List<double>())).ToArray();
        var counts = new (int Requests, int Tokens)[formats.Length];
        for (int round = 0; round < Rounds; round++)
            for (int k = 0; k < formats.Length; k++)
            {
                var constrained = await Round(formats[k], round, null);
                var free = await Round(null, round, constrained.Lengths);
                rates[k].Free.Add(free.TokensPerSecond);
                rates[k].Constrained.Add(constrained.TokensPerSecond);
                ratios[k].Add(constrained.TokensPerSecond / free.TokensPerSecond);
                counts[k].Requests += constrained.Lengths.Sum(l => l.Count);
                counts[k].Tokens += constrained.Lengths.Sum(l => l.Sum());
                progress.WriteLine($"[bench] round {round} {(k == 0 ? "four fields" : "long text")}: free {free.TokensPerSecond:F0} tok/s, constrained {constrained.TokensPerSecond:F0}");
            }
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Structured outputs (issue #11): engine throughput at 16 constrained streams");
        sb.AppendLine();
        sb.AppendLine("Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --constrained --out docs/benchmarks.md`  ");
        sb.AppendLine(ci, $"Model: the demo's shape (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, f32, random weights) over Gemma's {tok.VocabSize}-id vocabulary, so a decode step is cheap and the masks weigh as much as they can. 16 workers in a closed loop (each sends its next request, up to 64 new tokens, temperature 1, as soon as the last ends, until it has {Quota} tokens), so 16 streams stay running. Constrained: a strict JSON schema with four fields (strings, an integer range, an array), whose documents often end before 64 tokens (so a round sends more, shorter requests: see the request counts), and a one-field document that cannot end within 64 tokens (a string of at least 1 000 characters). Each constrained round is paired with a free round that sends the same requests with the same lengths (equal work: the same tokens, the same prompts to prefill); the ratio is the median of the {Rounds} paired ratios, the rates are medians with ranges. {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}.");
        sb.AppendLine();
        sb.AppendLine("| constrained by | requests / tokens (all rounds) | free tok/s | constrained tok/s | ratio |");
        sb.AppendLine("|---|---|---|---|---|");
        string[] names = ["four fields (ends early)", "long text (runs to the limit)"];
        for (int k = 0; k < formats.Length; k++)
        {
            var (f, c, ratio) = (Spread.Of(rates[k].Free), Spread.Of(rates[k].Constrained), Spread.Of(ratios[k]));
            sb.AppendLine(ci, $"| {names[k]} | {counts[k].Requests} / {counts[k].Tokens} | {f.Format("F0")} | {c.Format("F0")} | **{ratio.Median:F2}** ({ratio.Min:F2}–{ratio.Max:F2}) |");
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
