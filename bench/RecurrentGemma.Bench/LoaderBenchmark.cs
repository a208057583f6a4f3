using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace RecurrentGemma.Bench;

/// <summary>
/// Why the project has its own safetensors reader: the same checkpoint loaded by
/// <see cref="CheckpointLoader"/> and by TorchSharp.PyBridge's load_safetensors, page cache warm.
/// </summary>
public static class LoaderBenchmark
{
    public static string Run(TextWriter progress)
    {
        var config = new GriffinConfig
        {
            VocabSize = 32000, HiddenSize = 1024, IntermediateSize = 6144, NumHiddenLayers = 12,
            NumAttentionHeads = 8, HeadDimOverride = 128, LruWidthOverride = 1024,
        };
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Checkpoint reader choice (issue #2): own reader vs TorchSharp.PyBridge");
        sb.AppendLine();
        sb.AppendLine("Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --loaders --out docs/benchmarks.md`  ");
        sb.AppendLine(ci, $"Random weights, hidden 1024, 12 layers, vocab 32000; the file read once before (page cache warm); first load in a fresh process, then the best of 3; {DateTime.UtcNow:yyyy-MM-dd}.");
        sb.AppendLine();
        sb.AppendLine("| weights | file | ours, first | ours, best | PyBridge, first | PyBridge, best |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            var dir = Directory.CreateTempSubdirectory("rg-loaders-").FullName;
            try
            {
                var file = Path.Combine(dir, "model.safetensors");
                using (var m = new GriffinForCausalLM(config, dtype, CPU))
                {
                    RandomWeights.Initialize(m, 1);
                    SafeTensorsWriter.Write(file, m.NamedTensors());
                }
                File.WriteAllText(Path.Combine(dir, "config.json"), """{"vocab_size":32000,"hidden_size":1024,"intermediate_size":6144,"num_hidden_layers":12,"num_attention_heads":8,"head_dim":128,"lru_width":1024}""");
                File.ReadAllBytes(file);
                var ours = new List<double>();
                var theirs = new List<double>();
                for (int round = 0; round < 4; round++)
                {
                    var c = Stopwatch.StartNew();
                    using (CheckpointLoader.Load(dir, new ModelLoadOptions { DType = dtype })) { }
                    ours.Add(c.Elapsed.TotalSeconds);
                    c.Restart();
                    using (var m = new GriffinForCausalLM(config, dtype, CPU)) m.load_safetensors(file, strict: true);
                    theirs.Add(c.Elapsed.TotalSeconds);
                }
                string dt = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
                sb.AppendLine(ci, $"| {dt} | {new FileInfo(file).Length / 1e9:F2} GB | {ours[0]:F2} s | {ours.Skip(1).Min():F2} s | {theirs[0]:F2} s | {theirs.Skip(1).Min():F2} s |");
                progress.WriteLine($"[bench] loaders {dt}: ours {ours.Skip(1).Min():F2} s, PyBridge {theirs.Skip(1).Min():F2} s");
            }
            finally { Directory.Delete(dir, recursive: true); }
        }
        sb.AppendLine();
        sb.AppendLine("PyBridge reads through a small buffer and always copies; ours reads with large positional reads straight into");
        sb.AppendLine("the parameters (in parallel, into huge-page-advised memory) — kept by this measurement.");
        return sb.ToString();
    }
}
