using RecurrentGemma.Model;
using RecurrentGemma.Text;

namespace RecurrentGemma.Cli.Commands;

/// <summary>
/// <c>rgemma chat</c>: an interactive conversation in the terminal with the Gemma chat template,
/// streaming the answer as it is decoded. The state is kept between turns so a turn prefills
/// only what is new. Two slots: 0 runs the conversation; 1 is a snapshot taken at the end of each
/// prompt, because the answer's text, re-rendered by the template (trimmed, re-tokenized), often
/// does not give back the ids that were sampled — then the next turn continues from the snapshot.
/// </summary>
static class ChatCommand
{
    public static int Run(CliArgs args, TextReader stdin, TextWriter stdout, TextWriter stderr, CancellationToken cancel)
    {
        using var model = ModelArgs.Load(args);
        var tokenizer = ModelArgs.TokenizerFor(args);
        int maxNew = args.Int("max-new-tokens", 256);
        var system = args.Get("system");
        args.EnsureAllRead();

        var messages = new List<ChatMessage>();
        if (system is not null) messages.Add(ChatMessage.System(system));
        using var state = model.CreateState(2);
        var consumed = new List<int>();   // ids slot 0 has consumed
        var snapshot = new List<int>();   // ids slot 1 has consumed (the last prompt)
        stderr.WriteLine("rgemma chat — type a message, an empty line or Ctrl-D to quit.");
        while (!cancel.IsCancellationRequested)
        {
            stdout.Write("> ");
            stdout.Flush();
            var line = stdin.ReadLine();
            if (string.IsNullOrWhiteSpace(line)) break;
            messages.Add(ChatMessage.User(line));
            var prompt = GemmaChatTemplate.Encode(tokenizer, messages);

            // Continue from whichever state consumed a prefix of this prompt; otherwise start over.
            if (!IsPrefix(consumed, prompt))
            {
                if (IsPrefix(snapshot, prompt)) { state.CopySlot(1, 0); consumed = [.. snapshot]; }
                else { state.Reset(0); consumed.Clear(); }
            }
            stderr.WriteLine($"[prefill {prompt.Count - consumed.Count} of {prompt.Count} prompt tokens]");
            var answer = Generation.Stream(model, state, tokenizer, prompt.Skip(consumed.Count).ToList(), maxNew,
                text => { stdout.Write(text); stdout.Flush(); }, cancel, out var fed,
                afterPrefill: () => { state.CopySlot(0, 1); snapshot = [.. prompt]; });
            consumed = [.. prompt, .. fed];
            stdout.WriteLine();
            messages.Add(ChatMessage.Assistant(answer));
        }
        return 0;
    }

    static bool IsPrefix(List<int> prefix, List<int> of) =>
        prefix.Count > 0 && prefix.Count < of.Count && of.Take(prefix.Count).SequenceEqual(prefix);
}
