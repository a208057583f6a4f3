using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Text;
using RecurrentGemma.Text.Demo;
using static TorchSharp.torch;

namespace RecurrentGemma.Bench;

/// <summary>
/// Output tokens/s, time to first token and inter-token latency through HTTP/SSE (a real Kestrel
/// socket on loopback) at 1, 4 and 16 concurrent streams, next to the engine's own throughput on
/// the same model, prompts and concurrency.
/// </summary>
public static class HttpBenchmark
{
    /// <summary>The "small" shape (hidden 1024, 12 layers), vocabulary of the demo tokenizer.</summary>
    static readonly GriffinConfig Shape = new()
    {
        VocabSize = 4096, HiddenSize = 1024, IntermediateSize = 6144, NumHiddenLayers = 12,
        NumAttentionHeads = 8, HeadDimOverride = 128, LruWidthOverride = 1024,
    };

    public static async Task<string> RunAsync(int newTokens, TextWriter progress)
    {
        var dir = Directory.CreateTempSubdirectory("rg-http-bench-").FullName;
        try
        {
            WriteModel(dir, progress);

            var ci = CultureInfo.InvariantCulture;
            var sb = new StringBuilder();
            sb.AppendLine("## HTTP API (issue #5): throughput and latency through HTTP/SSE vs the engine alone");
            sb.AppendLine();
            sb.AppendLine(ci, $"Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --tokens {newTokens} --out docs/benchmarks.md`  ");
            sb.AppendLine(ci, $"Model: random weights, hidden 1024, 12 layers, bf16 ({Shape.ParameterCount / 1e6:F0}M parameters), demo tokenizer; {newTokens} output tokens per stream (stop ids blocked by logit_bias), greedy; real Kestrel socket on 127.0.0.1; {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}.");
            sb.AppendLine();
            sb.AppendLine("| concurrent streams | HTTP/SSE tok/s | engine-only tok/s | HTTP ÷ engine | TTFT p50 / p90 | inter-token p50 / p90 |");
            sb.AppendLine("|---|---|---|---|---|---|");

            await using var factory = await StartServer(dir, ("Engine:MaxSlots", "20"), ("Engine:MaxRunningSequences", "16"), ("Engine:ParkFinishedStates", "false"));
            var host = factory.Services.GetRequiredService<ModelHost>();
            using var http = factory.CreateClient();
            http.Timeout = TimeSpan.FromMinutes(10);
            var tokenizer = host.Inference!.Tokenizer;

            await Stream(http, 0, 4);   // warm-up
            foreach (int c in new[] { 1, 4, 16 })
            {
                var clock = Stopwatch.StartNew();
                var runs = await Task.WhenAll(Enumerable.Range(0, c).Select(i => Stream(http, i, newTokens)));
                double httpTps = runs.Sum(r => r.Tokens) / clock.Elapsed.TotalSeconds;
                double engineTps = EngineOnly(host, tokenizer, c, newTokens);
                var ttft = runs.Select(r => r.Ttft).Order().ToList();
                var itl = runs.SelectMany(r => r.Gaps).Order().ToList();
                sb.AppendLine(ci, $"| {c} | {httpTps:F1} | {engineTps:F1} | {httpTps / engineTps:F2} | {P(ttft, 50) * 1000:F0} / {P(ttft, 90) * 1000:F0} ms | {P(itl, 50) * 1000:F1} / {P(itl, 90) * 1000:F1} ms |");
                progress.WriteLine($"[bench] {c} streams: HTTP {httpTps:F1} tok/s, engine {engineTps:F1} tok/s");
            }
            return sb.ToString();
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>The benchmark model as a checkpoint directory: random weights of <see cref="Shape"/>
    /// in bf16, its config.json, and the demo tokenizer.</summary>
    public static void WriteModel(string dir, TextWriter progress)
    {
        progress.WriteLine("[bench] writing a random-weight model…");
        using (var model = new GriffinForCausalLM(Shape, ScalarType.BFloat16, CPU))
        {
            RandomWeights.Initialize(model, 17);
            SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), model.NamedTensors());
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(new
        {
            vocab_size = Shape.VocabSize, hidden_size = Shape.HiddenSize, intermediate_size = Shape.IntermediateSize,
            num_hidden_layers = Shape.NumHiddenLayers, num_attention_heads = Shape.NumAttentionHeads, head_dim = 128, lru_width = 1024,
        }));
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), DemoTokenizer.ModelBytes());
    }

    public static GriffinConfig ModelShape => Shape;

    /// <summary>The server over the model in <paramref name="dir"/> on a real Kestrel socket
    /// (loopback, any free port), loaded; <paramref name="settings"/> on top of the defaults.</summary>
    public static async Task<WebApplicationFactory<global::Program>> StartServer(string dir, params (string Key, string Value)[] settings)
    {
        var factory = new WebApplicationFactory<global::Program>().WithWebHostBuilder(b =>
        {
            b.UseContentRoot(AppContext.BaseDirectory);
            b.UseSetting("Urls", "http://127.0.0.1:0");
            b.UseSetting("Model:Path", dir);
            b.UseSetting("Model:DType", "bf16");
            b.UseSetting("Logging:LogLevel:Default", "Warning");
            foreach (var (key, value) in settings) b.UseSetting(key, value);
        });
        factory.UseKestrel(0);
        factory.StartServer();
        await factory.Services.GetRequiredService<ModelHost>().Loaded;
        return factory;
    }

    static string Prompt(int i) => $"Benchmark stream number {i}: please keep talking about the sea.";

    /// <summary>One streamed chat completion: tokens received, time to first token, gaps between tokens.</summary>
    static async Task<(int Tokens, double Ttft, List<double> Gaps)> Stream(HttpClient http, int i, int maxTokens)
    {
        var body = JsonSerializer.Serialize(new
        {
            messages = new[] { new { role = "user", content = Prompt(i) } },
            max_tokens = maxTokens, temperature = 0, stream = true, stream_options = new { include_usage = true },
            logit_bias = new Dictionary<string, int> { ["1"] = -100, ["107"] = -100 },
        });
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double first = -1, last = 0;
        var gaps = new List<double>();
        int tokens = 0;
        for (string? line; (line = await reader.ReadLineAsync()) is not null;)
        {
            if (!line.StartsWith("data: {")) continue;
            using var doc = JsonDocument.Parse(line[6..]);
            if (doc.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                tokens = usage.GetProperty("completion_tokens").GetInt32();
            var choices = doc.RootElement.GetProperty("choices");
            if (choices.GetArrayLength() == 0 || !choices[0].GetProperty("delta").TryGetProperty("content", out var c) || string.IsNullOrEmpty(c.GetString())) continue;
            double now = clock.Elapsed.TotalSeconds;
            if (first < 0) first = now; else gaps.Add(now - last);
            last = now;
        }
        return (tokens, first, gaps);
    }

    /// <summary>The same prompts and concurrency straight into a second engine over the same model.</summary>
    static double EngineOnly(ModelHost host, GemmaTokenizer tokenizer, int concurrency, int newTokens)
    {
        var model = host.Model!;
        var engine = new EngineClient(model, new EngineOptions { MaxSlots = 20, MaxRunningSequences = 16, ParkFinishedStates = false });
        try
        {
            var requests = Enumerable.Range(0, concurrency).Select(i => new GenerationRequest
            {
                PromptTokens = GemmaChatTemplate.Encode(tokenizer, [ChatMessage.User(Prompt(i))]),
                MaxNewTokens = newTokens, Sampling = SamplingParams.Greedy,
            }).ToList();
            var clock = Stopwatch.StartNew();
            var handles = requests.Select(r => engine.Submit(r)).ToList();
            int total = Task.WhenAll(handles.Select(async h =>
            {
                int n = 0;
                await foreach (var e in h.ReadEventsAsync()) if (e is TokenEvent) n++;
                return n;
            })).GetAwaiter().GetResult().Sum();
            return total / clock.Elapsed.TotalSeconds;
        }
        finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
    }

    static double P(List<double> sorted, int percentile) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(percentile / 100.0 * sorted.Count) - 1)];
}
