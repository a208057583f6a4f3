using System.Text.Json;
using RecurrentGemma.Model;

namespace RecurrentGemma.Cli.Commands;

/// <summary>
/// <c>rgemma generate</c>: greedy continuation of the given ids. Exactly --max-new-tokens ids,
/// unless a --stop-ids id is produced first (the stop id itself is not printed).
/// </summary>
static class GenerateCommand
{
    public static int Run(CliArgs args, TextWriter stdout)
    {
        using var model = ModelArgs.Load(args);
        if (args.Get("prompt") is { } text) return RunText(args, model, text, stdout);
        var prompt = ModelArgs.Tokens(args, model.Config);
        int maxNew = args.Int("max-new-tokens", 24);
        var stops = (args.Ids("stop-ids") ?? []).ToHashSet();
        args.EnsureAllRead();

        var generated = Greedy(model, prompt, maxNew, stops);
        stdout.WriteLine(JsonSerializer.Serialize(new { tokens = generated }));
        return 0;
    }

    /// <summary>--prompt: BOS + the text's ids, greedy until &lt;eos&gt;/&lt;end_of_turn&gt; or the limit.</summary>
    static int RunText(CliArgs args, GriffinForCausalLM model, string text, TextWriter stdout)
    {
        var tokenizer = ModelArgs.TokenizerFor(args);
        int maxNew = args.Int("max-new-tokens", 64);
        args.EnsureAllRead();
        if (tokenizer.VocabSize > model.Config.VocabSize)
            throw new InvalidDataException($"the tokenizer has {tokenizer.VocabSize} pieces but the model only {model.Config.VocabSize}");
        using var state = model.CreateState(1);
        var answer = Generation.Stream(model, state, tokenizer, tokenizer.EncodeWithBos(text), maxNew, _ => { }, CancellationToken.None, out var ids);
        stdout.WriteLine(JsonSerializer.Serialize(new { text = answer }, Json.Unescaped));
        return 0;
    }

    public static List<long> Greedy(GriffinForCausalLM model, long[] prompt, int maxNew, IReadOnlySet<long> stops)
    {
        var generated = new List<long>();
        if (maxNew == 0) return generated;
        using var state = model.CreateState(1);
        var logits = model.Forward([prompt], state, [0]);
        try
        {
            while (true)
            {
                long next;
                using (var best = logits.argmax(-1)) next = best.item<long>();
                if (stops.Contains(next)) break;
                generated.Add(next);
                if (generated.Count == maxNew) break;
                logits.Dispose();
                logits = model.Forward([new[] { next }], state, [0]);
            }
        }
        finally { logits.Dispose(); }
        return generated;
    }
}
