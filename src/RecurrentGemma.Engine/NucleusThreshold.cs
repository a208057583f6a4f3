namespace RecurrentGemma.Engine;

/// <summary>
/// The top-p threshold of one row of probabilities without sorting it: the probability of the id
/// at which the mass of the most likely ids first reaches top_p. Every id at least that likely
/// stays (ties at the threshold stay together, where a sort keeps them in whatever order it put
/// them). Found by selection: partition the candidates around a pivot into more likely, equal and
/// less likely, keep only the part in which the running mass crosses top_p, repeat — a few passes
/// over the row on average, where a sort of a 256k row is ~20. Mass is summed in float64.
/// </summary>
internal static class NucleusThreshold
{
    /// <summary>Below this many candidates the rest is sorted (cheaper than more passes).</summary>
    const int SortBelow = 64;

    /// <summary>Passes after which the rest is sorted whatever its size: a row that defeats the
    /// median-of-three pivot cannot make the selection quadratic.</summary>
    const int MaxPasses = 48;

    /// <param name="probs">the row's probabilities (non-negative; masked ids 0).</param>
    /// <param name="topP">in (0, 1].</param>
    /// <param name="scratch">at least <paramref name="probs"/>.Length floats, overwritten.</param>
    /// <returns>the threshold; 0 when the whole row's mass falls short of top_p (rounding): then every id stays.</returns>
    public static float Find(ReadOnlySpan<float> probs, double topP, Span<float> scratch)
    {
        var a = scratch[..probs.Length];
        probs.CopyTo(a);
        double above = 0;   // mass of the ids known to be more likely than every candidate left
        int lo = 0, hi = a.Length;
        for (int pass = 0; hi - lo > SortBelow && pass < MaxPasses; pass++)
        {
            float pivot = MedianOfThree(a[lo], a[lo + (hi - lo) / 2], a[hi - 1]);
            // Three-way partition of [lo, hi): [lo, gt) > pivot, [gt, eq) == pivot, [eq, hi) < pivot.
            int gt = lo, i = lo, lt = hi;
            double massGt = 0, massEq = 0;
            while (i < lt)
            {
                float x = a[i];
                if (x > pivot) { massGt += x; (a[gt], a[i]) = (a[i], a[gt]); gt++; i++; }
                else if (x < pivot) { lt--; (a[lt], a[i]) = (a[i], a[lt]); }
                else { massEq += x; i++; }
            }
            if (above + massGt >= topP) hi = gt;                    // the crossing is among the more likely
            else if (above + massGt + massEq >= topP) return pivot;   // it is at the pivot's value
            else { above += massGt + massEq; lo = lt; }              // among the less likely
        }
        var rest = a[lo..hi];
        rest.Sort();
        for (int i = rest.Length - 1; i >= 0; i--)
        {
            above += rest[i];
            if (above >= topP) return rest[i];
        }
        return 0f;
    }

    static float MedianOfThree(float a, float b, float c) =>
        a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
}
