using RecurrentGemma.Cli.Commands;

namespace RecurrentGemma.Cli;

/// <summary>
/// The rgemma command line. Results go to stdout (JSON where a program reads them), progress
/// and errors to stderr; exit code 0 on success, 1 on failure, 2 on a usage mistake.
/// </summary>
public static class CliApp
{
    public const string Usage = """
        rgemma — RecurrentGemma from the command line

        rgemma logits   --model <dir> --tokens 2,17,42 [--dtype f32|bf16] [--device cpu|cuda]
            Full-prefill logits of the given ids (no BOS added): {"logits": [[...], ...]}.
        rgemma generate --model <dir> --tokens 2,17,42 [--max-new-tokens 24] [--stop-ids 1,107]
                        [--dtype f32|bf16] [--device cpu|cuda]
            Greedy continuation ids: {"tokens": [...]}.
        rgemma generate --model <dir> --prompt "text" [--max-new-tokens 64] [--tokenizer <tokenizer.model>]
            BOS + the text, greedy until <eos>/<end_of_turn>: {"text": "..."}.
        rgemma chat     --model <dir> [--system "..."] [--max-new-tokens 256]
            Interactive chat with the Gemma template, streamed; the state carries over between turns.
        rgemma tokenize   --tokenizer <tokenizer.model>   stdin {"text": "..."} lines → {"ids": [...]} (no BOS)
        rgemma detokenize --tokenizer <tokenizer.model>   stdin {"ids": [...]} lines → {"text": "..."}
        rgemma bench    [--shape tiny|2b|all] [--dtype f32|bf16|all] [--out docs/benchmarks.md] [--quick]
            Random-weight model benchmarks (no download): load, prefill, decode, state size.
        rgemma bench --suite tokenizer [--tokenizer <tokenizer.model>] [--corpus <cases.jsonl>] [--out docs/benchmarks.md]
            Tokenizer encode/decode speed on ~1 MB of mixed text.
        rgemma bench --suite sampler [--repeats N] [--out docs/benchmarks.md]
            One batched sampler pass over 256k-id logits per setting at 1, 16 and 64 rows.
        rgemma bench --suite engine [--shape tiny|2b|all] [--dtype bf16|f32] [--quick] [--out docs/benchmarks.md]
            Engine throughput at 1–32 concurrent sequences, step overhead, 10-turn session reuse.
        rgemma bench --suite burst [--shape small|2b] [--dtype bf16|f32] [--requests N] [--repeats N] [--out docs/benchmarks.md]
            A burst of sampled requests at once, unseeded against one seed each: forwards, last first token.
        """;

    public static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default) =>
        RunAsync(args, TextReader.Null, stdout, stderr, cancel);

    public static async Task<int> RunAsync(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        CliArgs parsed;
        try
        {
            parsed = new CliArgs(args);
            switch (parsed.Command)
            {
                case "logits": return LogitsCommand.Run(parsed, stdout);
                case "generate": return GenerateCommand.Run(parsed, stdout);
                case "tokenize": return TokenizeCommands.Tokenize(parsed, stdin, stdout);
                case "detokenize": return TokenizeCommands.Detokenize(parsed, stdin, stdout);
                case "chat": return ChatCommand.Run(parsed, stdin, stdout, stderr, cancel);
                case "bench": return await BenchCommand.RunAsync(parsed, stdout, stderr, cancel);
                case "help" or "--help" or "-h":
                    await stdout.WriteLineAsync(Usage);
                    return 0;
                default:
                    throw new UsageException($"unknown command '{parsed.Command}'");
            }
        }
        catch (UsageException e)
        {
            await stderr.WriteLineAsync($"rgemma: {e.Message}\n\n{Usage}");
            return 2;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException or UnauthorizedAccessException)
        {
            await stderr.WriteLineAsync($"rgemma: {e.Message}");
            return 1;
        }
    }
}
