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

    /// <summary>Prompt chunks for this step: in admission order, each as much as the budget allows.</summary>
    public static List<(Sequence Sequence, int Tokens)> PlanPrefill(IEnumerable<Sequence> prefilling, int tokenBudget)
    {
        var plan = new List<(Sequence, int)>();
        int left = tokenBudget;
        foreach (var s in prefilling)
        {
            if (left <= 0) break;
            int n = Math.Min(s.PromptRemaining, left);
            if (n <= 0) continue;
            plan.Add((s, n));
            left -= n;
        }
        return plan;
    }
}
