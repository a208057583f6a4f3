using System.Text.Json;
using RecurrentGemma.Model.Tests;

namespace RecurrentGemma.Cli.Tests;

/// <summary>The rgemma contract: JSON on stdout, errors on stderr with a non-zero exit.</summary>
public class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.RunAsync(args, stdout, stderr).GetAwaiter().GetResult();
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Logits_prints_one_row_per_token_equal_to_the_reference(string name)
    {
        var fx = GriffinFixture.Get(name);
        var seq = fx.Ids(fx.Cases.GetProperty("a").GetProperty("sequences")[1]);
        var (code, stdout, stderr) = Run("logits", "--model", fx.Directory, "--tokens", string.Join(",", seq));
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var rows = doc.RootElement.GetProperty("logits").EnumerateArray().ToList();
        Assert.Equal(seq.Length, rows.Count);
        var flat = rows.SelectMany(r => r.EnumerateArray().Select(x => x.GetSingle())).ToArray();
        Assert.Equal(seq.Length * fx.Config.VocabSize, flat.Length);
        Compare.Close(fx.Array("a.seq1.logits").Data, flat, 2e-4, $"{name} rgemma logits");
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Generate_prints_the_reference_greedy_tokens(string name)
    {
        var fx = GriffinFixture.Get(name);
        var d = fx.Cases.GetProperty("d");
        var expected = fx.Ids(d.GetProperty("generated"));
        var (code, stdout, stderr) = Run("generate", "--model", fx.Directory, "--tokens", string.Join(",", fx.Ids(d.GetProperty("prompt"))),
            "--max-new-tokens", expected.Length.ToString());
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(expected, doc.RootElement.GetProperty("tokens").EnumerateArray().Select(x => x.GetInt64()));
    }

    [Fact]
    public void Generate_stops_before_a_stop_id_and_accepts_bf16()
    {
        var fx = GriffinFixture.Get("tiny");
        var d = fx.Cases.GetProperty("d");
        var expected = fx.Ids(d.GetProperty("generated"));  // 110, 201, 241, 11, …
        var (code, stdout, _) = Run("generate", "--model", fx.Directory, "--tokens", string.Join(",", fx.Ids(d.GetProperty("prompt"))),
            "--max-new-tokens", "24", "--stop-ids", "241,1");
        Assert.Equal(0, code);
        Assert.Equal("""{"tokens":[110,201]}""", stdout.Trim());

        (code, stdout, _) = Run("generate", "--model", fx.Directory, "--tokens", "2,17", "--max-new-tokens", "3", "--dtype", "bf16");
        Assert.Equal(0, code);
        Assert.Equal(3, JsonDocument.Parse(stdout).RootElement.GetProperty("tokens").GetArrayLength());
    }

    [Theory]
    [InlineData(2, "unknown command", "frobnicate")]
    [InlineData(2, "--tokens is required", "logits", "--model", "MODEL")]
    [InlineData(2, "unknown option(s): --bogus", "logits", "--model", "MODEL", "--tokens", "2", "--bogus", "1")]
    [InlineData(2, "outside the vocabulary", "generate", "--model", "MODEL", "--tokens", "2,256")]
    [InlineData(2, "unknown dtype 'f8'", "logits", "--model", "MODEL", "--tokens", "2", "--dtype", "f8")]
    [InlineData(2, "comma-separated integers", "logits", "--model", "MODEL", "--tokens", "2,x")]
    [InlineData(2, "--levels must be comma-separated sequence counts from 1 to 1024", "bench", "--suite", "engine", "--levels", "0,4")]
    [InlineData(2, "--sequences must be comma-separated batch sizes from 1 to 1024", "bench", "--suite", "step", "--sequences", "1,5000")]
    [InlineData(1, "model directory not found", "logits", "--model", "/no/such/dir", "--tokens", "2")]
    [InlineData(1, "CUDA is not available", "logits", "--model", "MODEL", "--tokens", "2", "--device", "cuda")]
    public void Errors_go_to_stderr_with_a_non_zero_exit(int expectedCode, string message, params string[] args)
    {
        var dir = GriffinFixture.Get("tiny").Directory;
        var (code, stdout, stderr) = Run(args.Select(a => a == "MODEL" ? dir : a).ToArray());
        if (message == "CUDA is not available" && TorchSharp.torch.cuda.is_available()) return; // a GPU host
        Assert.Equal(expectedCode, code);
        Assert.Equal("", stdout);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void Bench_sections_replace_only_their_own_markers()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "# Benchmarks\n\n<!-- bench:other:begin -->\nkeep\n<!-- bench:other:end -->\n");
            Commands.BenchCommand.WriteSection(path, "model", "first");
            Commands.BenchCommand.WriteSection(path, "model", "second");
            var text = File.ReadAllText(path);
            Assert.Contains("keep", text);
            Assert.Contains("second", text);
            Assert.DoesNotContain("first", text);
        }
        finally { File.Delete(path); }
    }
    [Fact]
    public void Burst_bench_counts_one_prefill_forward_for_the_seeded_prompts_and_one_each_without_the_row_exact_kernel()
    {
        var tiny = new Model.GriffinConfig
        {
            VocabSize = 300, HiddenSize = 64, IntermediateSize = 192, NumHiddenLayers = 3,
            NumAttentionHeads = 2, HeadDimOverride = 32, LruWidthOverride = 64,
        };
        var table = new Bench.BurstBenchmark("tiny", tiny, TorchSharp.torch.ScalarType.Float32, requests: 4, rounds: 1, TextWriter.Null).Run();
        int Forwards(string row) => int.Parse(table.Split('\n').Single(l => l.StartsWith($"| {row} |", StringComparison.Ordinal)).Split('|')[4].Trim().Split(' ')[0]);
        // 48 new tokens: one prefill forward or more, then 47 decode steps; a forward per seeded prompt without the row-exact kernel.
        Assert.InRange(Forwards("unseeded"), 48, 4 + 47 + 3);
        Assert.InRange(Forwards("seeded, a forward each (row-exact kernel off)"), 4 + 47, 4 + 47 + 3);
        if (Model.Modules.RowExactGemm.Available(tiny, TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.CPU))
            Assert.InRange(Forwards("seeded, one row-exact forward a step"), 48, 4 + 47 + 3);
        Assert.Contains("| 512 tokens |", table);   // the one-request table
        Assert.True(Model.Modules.RowExactGemm.Enabled);   // switched back on after the run
    }
}
