using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;

namespace RecurrentGemma.Cli.Commands;

/// <summary>The options every model-running command shares: --model, --dtype, --device.</summary>
static class ModelArgs
{
    public static GriffinForCausalLM Load(CliArgs args)
    {
        var dir = args.Require("model");
        var options = new ModelLoadOptions
        {
            DType = Parse(() => TorchDevices.ParseDType(args.Get("dtype"))),
            Device = Parse(() => TorchDevices.Resolve(args.Get("device") ?? "cpu")),
        };
        return CheckpointLoader.Load(dir, options);
    }

    /// <summary>--tokenizer, or tokenizer.model inside the --model directory.</summary>
    public static RecurrentGemma.Text.GemmaTokenizer TokenizerFor(CliArgs args)
    {
        var path = args.Get("tokenizer") ?? Path.Combine(args.Require("model"), "tokenizer.model");
        return RecurrentGemma.Text.GemmaTokenizer.FromFile(path);
    }

    public static long[] Tokens(CliArgs args, GriffinConfig config)
    {
        var ids = args.Ids("tokens") ?? throw new UsageException("--tokens is required (comma-separated ids)");
        if (ids.Length == 0) throw new UsageException("--tokens needs at least one id");
        foreach (var id in ids)
            if (id < 0 || id >= config.VocabSize) throw new UsageException($"token id {id} is outside the vocabulary (0..{config.VocabSize - 1})");
        return ids;
    }

    static T Parse<T>(Func<T> parse)
    {
        try { return parse(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }
}
