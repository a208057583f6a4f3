using System.Text.Json;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.Tests;

/// <summary>A checkpoint directory the server can load: the demo model's shape with the given
/// vocabulary, random weights, config.json and the demo tokenizer.</summary>
static class ModelDirectory
{
    public static void Write(string dir, int vocab)
    {
        Directory.CreateDirectory(dir);
        var config = ModelHost.DemoConfig(vocab);
        using (var model = new RecurrentGemma.Model.GriffinForCausalLM(config, TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.CPU))
        {
            RecurrentGemma.Model.RandomWeights.Initialize(model, 5);
            RecurrentGemma.Model.Checkpoints.SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), model.NamedTensors());
        }
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(new
        {
            vocab_size = vocab, hidden_size = config.HiddenSize, intermediate_size = config.IntermediateSize, num_hidden_layers = config.NumHiddenLayers,
            num_attention_heads = config.NumAttentionHeads, lru_width = config.LruWidth, attention_window_size = config.AttentionWindowSize,
            _block_types = new[] { "recurrent", "recurrent", "attention" },
        }));
        File.WriteAllBytes(Path.Combine(dir, "tokenizer.model"), RecurrentGemma.Text.Demo.DemoTokenizer.ModelBytes());
    }
}
