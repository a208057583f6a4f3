namespace RecurrentGemma.Engine;

/// <summary>
/// The scheduling policy, free of tensors: first come, first served admission within the limits
/// on running sequences and slots, and prefill chunks that share one token budget per step, so
/// a long prompt delays the running streams by at most one chunk.
/// </summary>
internal static class Scheduler
{
    /// <summary>Whether the head of the queue can start now.</summary>
    public static bool CanAdmit(int choices, int runningSequences, int maxRunning, int obtainableSlots, bool hasReusableState)
    {
        int slotsNeeded = hasReusableState ? choices - 1 : choices;
        return runningSequences + choices <= maxRunning && obtainableSlots >= slotsNeeded;
    }

    /// <summary>Prompt chunks for this step, as forwards: in admission order, each prompt as much
    /// as the budget allows, the unseeded ones sharing one forward. A scored prompt (prompt
    /// logprobs: every position's logits, [T, V] floats) runs alone, at most
    /// <paramref name="scoredChunk"/> tokens a step, when it is the oldest; until then it waits, so
    /// it cannot starve and never makes another prompt's chunk carry a vocabulary per position.
    /// With <paramref name="seededAlone"/>, a prompt whose request has a seed gets a forward of its
    /// own, always in chunks of the whole budget (the last one shorter), the chunks it would get
    /// with nothing else queued: a chunk shared with other prompts is a different matrix product
    /// than the prompt's own, which rounds its state differently, so the seed could give other text
    /// beside other requests (BatchInvariance covers the decode steps after it). Such forwards
    /// share the step and its budget with the others, so a burst of seeded prompts is prefilled in
    /// a few steps rather than one step each; one whose chunk does not fit what is left of the
    /// budget waits for the next step (the first prompt of a step always fits). Such a forward
    /// counts at least <paramref name="forwardTokens"/> of the budget: its fixed cost (a read of
    /// every weight) does not shrink with its chunk.</summary>
    public static List<List<(Sequence Sequence, int Tokens)>> PlanPrefill(IEnumerable<Sequence> prefilling, int tokenBudget,
        int scoredChunk = int.MaxValue, bool seededAlone = false, int forwardTokens = 1)
    {
        var shared = new List<(Sequence, int)>();
        var forwards = new List<List<(Sequence, int)>>();
        int left = tokenBudget;
        foreach (var s in prefilling)
        {
            if (left <= 0) break;
            int n = Math.Min(s.PromptRemaining, left);
            if (n <= 0) continue;
            bool first = left == tokenBudget;
            if (s.Request.Request.PromptLogprobs is not null)
            {
                if (first) return [[(s, Math.Min(n, scoredChunk))]];
                continue;
            }
            if (seededAlone && s.Request.Request.Sampling.Seed is not null)
            {
                int own = Math.Min(s.PromptRemaining, tokenBudget), cost = Math.Max(own, forwardTokens);
                if (!first && cost > left) continue;
                forwards.Add([(s, own)]);
                left -= Math.Min(cost, left);
                continue;
            }
            if (shared.Count == 0) forwards.Add(shared);   // the shared forward runs in its first prompt's turn
            shared.Add((s, n));
            left -= n;
        }
        return forwards;
    }
}
