using System.Text.Json;
using RecurrentGemma.Model.Checkpoints;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>Loading is strict: every way a checkpoint can be wrong is an error naming the culprit.</summary>
public sealed class CheckpointLoaderTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("rg-ckpt-").FullName;
    readonly GriffinFixture _fx = GriffinFixture.Get("tiny");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A copy of the tiny model's tensors, optionally edited, written as a snapshot dir.</summary>
    List<(string Name, Tensor Tensor)> FixtureTensors()
    {
        using var file = SafeTensorsFile.Open(Path.Combine(_fx.Directory, "model.safetensors"));
        return file.Entries.Keys.Order(StringComparer.Ordinal).Select(n => (n, file.Read(n))).ToList();
    }

    void WriteSnapshot(IEnumerable<(string, Tensor)> tensors, string file = "model.safetensors")
    {
        File.Copy(Path.Combine(_fx.Directory, "config.json"), Path.Combine(_dir, "config.json"), overwrite: true);
        SafeTensorsWriter.Write(Path.Combine(_dir, file), tensors);
    }

    float[] LogitsOf(GriffinForCausalLM model)
    {
        var seq = _fx.Ids(_fx.Cases.GetProperty("a").GetProperty("sequences")[0]);
        using var state = model.CreateState(1);
        using var logits = model.Forward([seq], state, [0], LogitsSelection.All);
        return Compare.Floats(logits);
    }

    [Fact]
    public void Sharded_checkpoints_load_through_the_index()
    {
        var all = FixtureTensors();
        var first = all.Take(all.Count / 2).ToList();
        var second = all.Skip(all.Count / 2).ToList();
        WriteSnapshot(first, "model-00001-of-00002.safetensors");
        WriteSnapshot(second, "model-00002-of-00002.safetensors");
        var map = first.ToDictionary(t => t.Name, _ => "model-00001-of-00002.safetensors");
        foreach (var t in second) map[t.Name] = "model-00002-of-00002.safetensors";
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"), JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));

        using var model = CheckpointLoader.Load(_dir);
        Compare.Close(_fx.Array("a.seq0.logits").Data, LogitsOf(model), 2e-4, "sharded");
    }

    [Theory]
    [InlineData("/etc/passwd")]
    [InlineData("../outside.safetensors")]
    [InlineData("sub/../../outside.safetensors")]
    [InlineData("./model.safetensors")]
    [InlineData("..\\outside.safetensors")]
    [InlineData("")]
    public void Shard_names_must_stay_inside_the_snapshot(string shard)
    {
        File.WriteAllText(Path.Combine(_dir, "model.safetensors"), "x");
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"),
            JsonSerializer.Serialize(new { weight_map = new Dictionary<string, string> { ["model.embed_tokens.weight"] = shard } }));
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.WeightFiles(_dir));
        Assert.Contains("'model.embed_tokens.weight'", e.Message);
    }

    [Fact]
    public void A_shard_link_may_lead_into_the_hub_caches_blobs_but_nowhere_else()
    {
        // The Hugging Face cache layout: repo/snapshots/<rev>/file → ../../blobs/<hash>.
        var snapshot = Directory.CreateDirectory(Path.Combine(_dir, "repo", "snapshots", "rev1")).FullName;
        var blobs = Directory.CreateDirectory(Path.Combine(_dir, "repo", "blobs")).FullName;
        File.WriteAllText(Path.Combine(blobs, "abc123"), "weights");
        File.CreateSymbolicLink(Path.Combine(snapshot, "model-1.safetensors"), "../../blobs/abc123");
        void Index(string shard) => File.WriteAllText(Path.Combine(snapshot, "model.safetensors.index.json"),
            JsonSerializer.Serialize(new { weight_map = new Dictionary<string, string> { ["w"] = shard } }));

        Index("model-1.safetensors");
        Assert.Equal(Path.Combine(snapshot, "model-1.safetensors"), Assert.Single(CheckpointLoader.WeightFiles(snapshot)));

        var secret = Path.Combine(_dir, "secret.txt");
        File.WriteAllText(secret, "not weights");
        File.CreateSymbolicLink(Path.Combine(snapshot, "model-2.safetensors"), secret);
        Index("model-2.safetensors");
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.WeightFiles(snapshot));
        Assert.Contains("'w'", e.Message);
        Assert.Contains("outside the snapshot", e.Message);
    }

    [Fact]
    public void F16_tensors_are_converted_on_load_and_an_lm_head_copy_is_accepted()
    {
        var tensors = FixtureTensors().Select(t => (t.Name, t.Tensor.to(ScalarType.Float16))).ToList();
        tensors.Add(("lm_head.weight", tensors.First(t => t.Name == "model.embed_tokens.weight").Item2));
        WriteSnapshot(tensors);
        using var model = CheckpointLoader.Load(_dir);
        Assert.Equal(ScalarType.Float32, model.DType);
        Compare.Close(_fx.Array("a.seq0.logits").Data, LogitsOf(model), 0.1, "f16 weights"); // f16 rounding of the weights
    }

    [Fact]
    public void Loading_into_bf16_gives_bf16_parameters()
    {
        using var model = CheckpointLoader.Load(_fx.Directory, new ModelLoadOptions { DType = ScalarType.BFloat16 });
        Assert.All(model.NamedTensors(), t => Assert.Equal(ScalarType.BFloat16, t.Tensor.dtype));
        using var state = model.CreateState(1);
        Assert.Equal(ScalarType.Float32, state.RnnOf(0, 0).dtype);
        Assert.Equal(ScalarType.BFloat16, state.ConvOf(0, 0).dtype);
    }

    [Fact]
    public void A_missing_tensor_is_named()
    {
        WriteSnapshot(FixtureTensors().Where(t => t.Name != "model.layers.2.temporal_block.k_proj.weight"));
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.Load(_dir));
        Assert.Contains("missing tensor model.layers.2.temporal_block.k_proj.weight [16, 64]", e.Message);
    }

    [Fact]
    public void An_unexpected_tensor_is_named()
    {
        var tensors = FixtureTensors();
        tensors.Add(("model.layers.0.temporal_block.q_proj.weight", zeros(64, 64)));
        WriteSnapshot(tensors);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.Load(_dir));
        Assert.Contains("unexpected tensor model.layers.0.temporal_block.q_proj.weight [64, 64]", e.Message);
    }

    [Fact]
    public void A_mis_shaped_tensor_names_both_shapes()
    {
        WriteSnapshot(FixtureTensors().Select(t => t.Name == "model.final_norm.weight" ? (t.Name, zeros(65)) : t));
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.Load(_dir));
        Assert.Contains("model.final_norm.weight has shape [65]", e.Message);
        Assert.Contains("expects [64]", e.Message);
    }

    [Fact]
    public void A_truncated_file_names_the_file()
    {
        WriteSnapshot(FixtureTensors());
        var path = Path.Combine(_dir, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 1000)]);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.Load(_dir));
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Theory]
    [InlineData(new byte[] { 1, 2, 3 }, "shorter than")]
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0 }, "header length")]
    [InlineData(new byte[] { 4, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'x', (byte)'x', (byte)'}' }, "not valid safetensors JSON")]
    public void A_corrupt_header_names_the_file(byte[] content, string why)
    {
        File.Copy(Path.Combine(_fx.Directory, "config.json"), Path.Combine(_dir, "config.json"));
        var path = Path.Combine(_dir, "model.safetensors");
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointLoader.Load(_dir));
        Assert.Contains(path, e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void A_directory_without_weights_says_so()
    {
        File.Copy(Path.Combine(_fx.Directory, "config.json"), Path.Combine(_dir, "config.json"));
        var e = Assert.Throws<FileNotFoundException>(() => CheckpointLoader.Load(_dir));
        Assert.Contains("neither model.safetensors nor model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void Progress_is_reported_per_tensor_up_to_all_bytes()
    {
        var reports = new List<LoadProgress>();
        using var model = CheckpointLoader.Load(_fx.Directory, new ModelLoadOptions { Progress = new SyncProgress(reports.Add) });
        Assert.Equal(model.NamedTensors().Count(), reports.Count);
        Assert.Equal(reports[^1].BytesTotal, reports[^1].BytesDone);
        Assert.Equal(model.ParameterBytes, reports[^1].BytesTotal);
    }

    [Fact]
    public void Writer_and_reader_round_trip_every_supported_dtype()
    {
        var path = Path.Combine(_dir, "x.safetensors");
        using var a = arange(12, ScalarType.Float32).view(3, 4);
        using var b = a.to(ScalarType.BFloat16);
        using var c = a.to(ScalarType.Float16);
        using var d = arange(5, ScalarType.Int64);
        SafeTensorsWriter.Write(path, [("a", a), ("b", b), ("c", c), ("d", d)]);
        using var file = SafeTensorsFile.Open(path);
        foreach (var (n, t) in new[] { ("a", a), ("b", b), ("c", c), ("d", d) })
        {
            using var back = file.Read(n);
            Assert.Equal(t.dtype, back.dtype);
            Assert.True(back.equal(t).all().item<bool>(), n);
        }
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Tensors_larger_than_a_read_chunk_and_a_huge_page_round_trip_exactly(ScalarType dtype)
    {
        // 8192×1024 embedding: 32 MiB in f32 — read in several 16 MiB chunks, advised to huge pages.
        var config = new GriffinConfig
        {
            VocabSize = 8192, HiddenSize = 1024, IntermediateSize = 2048, NumHiddenLayers = 2,
            NumAttentionHeads = 4, LruWidthOverride = 1024, BlockTypes = [BlockKind.Recurrent, BlockKind.Attention],
        };
        using var source = new GriffinForCausalLM(config, dtype, CPU);
        RandomWeights.Initialize(source, seed: 5);
        SafeTensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), source.NamedTensors());
        File.WriteAllText(Path.Combine(_dir, "config.json"), JsonSerializer.Serialize(new
        {
            vocab_size = 8192, hidden_size = 1024, intermediate_size = 2048, num_hidden_layers = 2,
            num_attention_heads = 4, lru_width = 1024, block_types = new[] { "recurrent", "attention" },
        }));
        using var loaded = CheckpointLoader.Load(_dir, new ModelLoadOptions { DType = dtype });
        var expected = source.NamedTensors().ToDictionary(t => t.Name, t => t.Tensor);
        foreach (var (name, t) in loaded.NamedTensors())
            Assert.True(t.equal(expected[name]).all().item<bool>(), $"{name} differs after the round trip");
    }

    sealed class SyncProgress(Action<LoadProgress> report) : IProgress<LoadProgress>
    {
        public void Report(LoadProgress value) => report(value);
    }
}
