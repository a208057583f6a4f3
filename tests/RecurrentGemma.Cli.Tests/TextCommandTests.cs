using System.Text.Json;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using RecurrentGemma.Text;
using RecurrentGemma.Text.Demo;
using RecurrentGemma.Text.Tests;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Tests;

/// <summary>A snapshot directory with a small random model and the demo tokenizer.</summary>
public sealed class DemoSnapshot : IDisposable
{
    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("rg-demo-").FullName;

    public DemoSnapshot()
    {
        var config = new GriffinConfig
        {
            VocabSize = 4096, HiddenSize = 64, IntermediateSize = 256, NumHiddenLayers = 3,
            NumAttentionHeads = 4, LruWidthOverride = 64, AttentionWindowSize = 16,
        };
        using var model = new GriffinForCausalLM(config, ScalarType.Float32, CPU);
        RandomWeights.Initialize(model, seed: 11);
        SafeTensorsWriter.Write(Path.Combine(Directory, "model.safetensors"), model.NamedTensors());
        File.WriteAllText(Path.Combine(Directory, "config.json"), """
            {"vocab_size": 4096, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3,
             "num_attention_heads": 4, "lru_width": 64, "attention_window_size": 16, "head_dim": 16}
            """);
        File.WriteAllBytes(Path.Combine(Directory, "tokenizer.model"), DemoTokenizer.ModelBytes());
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
}

public class TextCommandTests : IClassFixture<DemoSnapshot>
{
    readonly DemoSnapshot _demo;
    public TextCommandTests(DemoSnapshot demo) => _demo = demo;

    static (int Code, string Out, string Err) Run(string stdin, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.RunAsync(args, new StringReader(stdin), stdout, stderr).GetAwaiter().GetResult();
        return (code, stdout.ToString(), stderr.ToString());
    }

    static string GemmaModelPath => Path.Combine(TokenizerFixtures.Root, "gemma-tokenizer", "tokenizer.model");

    [Fact]
    public void Tokenize_writes_one_ids_line_per_text_line_exactly_as_SentencePiece()
    {
        var cases = TokenizerFixtures.GemmaCases.Take(40).ToList();
        var input = string.Join("\n", cases.Select(c => JsonSerializer.Serialize(new { text = c.Text })));
        var (code, stdout, stderr) = Run(input, "tokenize", "--tokenizer", GemmaModelPath);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(cases.Count, lines.Length);
        for (int i = 0; i < cases.Count; i++)
            Assert.Equal(cases[i].Ids, JsonDocument.Parse(lines[i]).RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()));
    }

    [Fact]
    public void Detokenize_writes_the_SentencePiece_decode()
    {
        var cases = TokenizerFixtures.GemmaCases.Take(40).ToList();
        var input = string.Join("\n", cases.Select(c => JsonSerializer.Serialize(new { ids = c.Ids })));
        var (code, stdout, stderr) = Run(input, "detokenize", "--tokenizer", GemmaModelPath);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < cases.Count; i++)
            Assert.Equal(cases[i].Decoded, JsonDocument.Parse(lines[i]).RootElement.GetProperty("text").GetString());
    }

    [Theory]
    [InlineData("tokenize", "not json", "line 1: not valid JSON")]
    [InlineData("tokenize", "{\"txt\": \"a\"}", "line 1: expected {\"text\"")]
    [InlineData("detokenize", "{\"ids\": [1, 999999]}", "outside the vocabulary")]
    public void Bad_lines_are_reported_with_their_line_number(string command, string input, string message)
    {
        var (code, _, stderr) = Run(input, command, "--tokenizer", GemmaModelPath);
        Assert.Equal(1, code);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void Generate_with_a_text_prompt_uses_the_tokenizer_in_the_model_directory()
    {
        var (code, stdout, stderr) = Run("", "generate", "--model", _demo.Directory, "--prompt", "Hello there", "--max-new-tokens", "8");
        Assert.True(code == 0, stderr);
        var text = JsonDocument.Parse(stdout).RootElement.GetProperty("text").GetString();
        Assert.NotNull(text);
        // Deterministic: the same command gives the same text.
        Assert.Equal(stdout, Run("", "generate", "--model", _demo.Directory, "--prompt", "Hello there", "--max-new-tokens", "8").Out);
    }

    [Fact]
    public void Chat_answers_each_line_and_keeps_the_state_between_turns()
    {
        var (code, stdout, stderr) = Run("Hi!\nAnd again?\n\n", "chat", "--model", _demo.Directory, "--max-new-tokens", "5");
        Assert.True(code == 0, stderr);
        Assert.Equal(4, stdout.Split("> ").Length);   // two lines answered, a third prompt, then the empty line quits
        var prefills = System.Text.RegularExpressions.Regex.Matches(stderr, @"\[prefill (\d+) of (\d+) prompt tokens\]")
            .Select(m => (New: int.Parse(m.Groups[1].Value), Total: int.Parse(m.Groups[2].Value))).ToList();
        Assert.Equal(2, prefills.Count);
        Assert.Equal(prefills[0].Total, prefills[0].New);            // first turn: everything
        // Second turn: at least the whole first prompt is reused (the state continues).
        Assert.True(prefills[1].New <= prefills[1].Total - prefills[0].Total, stderr);
    }
}
