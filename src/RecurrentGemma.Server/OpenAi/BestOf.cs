namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// Completions' best_of: each prompt's candidates (generated as one request's choices, so the
/// prompt is prefilled once and its state forked) ranked by their log probability per token —
/// the mean of their sampled tokens' log-probabilities, as OpenAI defines "best" — and the first
/// n kept, in that order. A candidate with no token (it ended at once) ranks last: it has no
/// per-token probability to compare. Equal means keep the candidates' order.
/// </summary>
public static class BestOf
{
    /// <param name="sampled">each candidate's sampled log-probabilities, prompt by prompt (<paramref name="candidates"/> each).</param>
    /// <param name="candidates">candidates per prompt (best_of).</param>
    /// <param name="returned">choices returned per prompt (n).</param>
    /// <returns>the candidate index of each returned choice: <paramref name="returned"/> per prompt, prompt by prompt.</returns>
    public static int[] Pick(IReadOnlyList<IReadOnlyList<float>> sampled, int candidates, int returned)
    {
        if (returned >= candidates) return [.. Enumerable.Range(0, sampled.Count)];
        var picked = new List<int>();
        for (int from = 0; from < sampled.Count; from += candidates)
            picked.AddRange(Enumerable.Range(from, candidates)
                .OrderByDescending(i => sampled[i].Count == 0 ? double.NegativeInfinity : sampled[i].Average(x => (double)x))
                .Take(returned));
        return [.. picked];
    }
}
