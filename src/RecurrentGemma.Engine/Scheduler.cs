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
    ///
    /// A prompt whose request has a seed must get the bits it gets with nothing else queued, or
    /// the seed could give other text beside other requests (BatchInvariance covers the decode
    /// steps after it). So it is always cut into chunks of the whole budget (the last one
    /// shorter), and with <paramref name="seeded"/> = <see cref="SeededPrefill.RowExact"/> all such
    /// chunks of the step share one row-exact forward (each row computed as alone, the
    /// projections shared: RowExactForward); with <see cref="SeededPrefill.OwnForward"/> (where
    /// that forward's kernels are missing) each gets a forward of its own — a chunk shared with
    /// other prompts in a padded batch is a different computation. A seeded chunk that does not fit
    /// what is left of the budget waits for the next step (the first prompt of a step always
    /// fits). A forward for seeded chunks counts at least <paramref name="forwardTokens"/> of the
    /// budget: its fixed cost (a read of every weight) does not shrink with its chunks.</summary>
    public static List<PrefillForward> PlanPrefill(IEnumerable<Sequence> prefilling, int tokenBudget,
        int scoredChunk = int.MaxValue, SeededPrefill seeded = SeededPrefill.Shared, int forwardTokens = 1)
    {
        PrefillForward? shared = null, exact = null;
        var forwards = new List<PrefillForward>();
        int left = tokenBudget;
        foreach (var s in prefilling)
        {
            if (left <= 0) break;
            int n = Math.Min(s.PromptRemaining, left);
            if (n <= 0) continue;
            bool first = left == tokenBudget;
            if (s.Request.Request.PromptLogprobs is not null)
            {
                if (first) return [new PrefillForward([(s, Math.Min(n, scoredChunk))], false)];
                continue;
            }
            if (seeded != SeededPrefill.Shared && s.Request.Request.Sampling.Seed is not null)
            {
                int own = Math.Min(s.PromptRemaining, tokenBudget);
                bool opens = seeded == SeededPrefill.OwnForward || exact is null;
                int cost = opens ? Math.Max(own, forwardTokens) : own;
                if (!first && cost > left) continue;
                if (opens)
                {
                    var forward = new PrefillForward([], seeded == SeededPrefill.RowExact);
                    forwards.Add(forward);
                    if (forward.RowExact) exact = forward;
                    forward.Rows.Add((s, own));
                }
                else exact!.Rows.Add((s, own));
                left -= Math.Min(cost, left);
                continue;
            }
            if (shared is null) forwards.Add(shared = new PrefillForward([], false));   // the shared forward runs in its first prompt's turn
            shared.Rows.Add((s, n));
            left -= n;
        }
        return forwards;
    }
}

/// <summary>How the scheduler prefills the prompts of seeded requests (<see cref="Scheduler.PlanPrefill"/>).</summary>
internal enum SeededPrefill
{
    /// <summary>Like any prompt (no batch-invariance guarantee to keep).</summary>
    Shared,
    /// <summary>Each in a forward of its own.</summary>
    OwnForward,
    /// <summary>All of a step's in one row-exact forward.</summary>
    RowExact,
}

/// <summary>One forward of a prefill step: its prompts' chunks, and whether it is row-exact (seeded prompts only).</summary>
internal sealed record PrefillForward(List<(Sequence Sequence, int Tokens)> Rows, bool RowExact);
