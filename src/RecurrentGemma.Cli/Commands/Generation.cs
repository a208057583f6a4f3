using RecurrentGemma.Model;
using RecurrentGemma.Text;

namespace RecurrentGemma.Cli.Commands;

/// <summary>Greedy text generation for the CLI: prefill, then decode until a stop id or the limit.</summary>
static class Generation
{
    /// <summary>
    /// Feeds <paramref name="newTokens"/> on top of the slot-0 state, then decodes greedily,
    /// writing text as it becomes final. Returns the answer text; <paramref name="fed"/> receives
    /// the generated ids that were fed back into the state (the last sampled one never is).
    /// </summary>
    public static string Stream(GriffinForCausalLM model, GriffinState state, GemmaTokenizer tokenizer, List<int> newTokens,
        int maxNew, Action<string> write, CancellationToken cancel, out List<int> fed, Action? afterPrefill = null)
    {
        fed = [];
        var stops = new HashSet<long> { tokenizer.EosId };
        if (tokenizer.EndOfTurnId >= 0) stops.Add(tokenizer.EndOfTurnId);
        var detok = tokenizer.CreateDetokenizer();
        var answer = new System.Text.StringBuilder();
        var logits = model.Forward([newTokens.Select(i => (long)i).ToArray()], state, [0]);
        afterPrefill?.Invoke();
        try
        {
            for (int n = 0; n < maxNew && !cancel.IsCancellationRequested; n++)
            {
                long next;
                using (var best = logits.argmax(-1)) next = best.item<long>();
                if (stops.Contains(next)) break;
                var text = detok.Push((int)next);
                answer.Append(text);
                write(text);
                logits.Dispose();
                logits = model.Forward([new[] { next }], state, [0]);
                fed.Add((int)next);
            }
        }
        finally { logits.Dispose(); }
        var rest = detok.Flush();
        answer.Append(rest);
        write(rest);
        return answer.ToString();
    }
}
