namespace RecurrentGemma.Engine;

/// <summary>
/// The top-p threshold of one row of probabilities without sorting it: the probability of the id
/// at which the mass of the most likely ids first reaches top_p. Every id at least that likely
/// stays (ties at the threshold stay together, where a sort keeps them in whatever order it put
/// them). Found by a radix selection: non-negative floats order as their bit patterns do, so one
/// pass sums the row's mass per value of the top 16 bits (sign, exponent and 7 mantissa bits:
/// buckets 1/128 of an octave wide), a walk down the buckets finds the one in which the running
/// mass reaches top_p, and a second pass sorts just that bucket's ids. Two passes over a 256k row
/// (~0.4–0.6 ms) where sorting it took ~20 ms and a partition-based selection ~2.5 ms (one-off
/// timing, docs/benchmarks.md). Mass is summed in float64.
/// </summary>
internal static class NucleusThreshold
{
    const int Buckets = 1 << 16;

    /// <summary>Mass per bucket, one table per thread (512 KiB, cleared per row).</summary>
    [ThreadStatic] static double[]? _mass;

    /// <param name="probs">the row's probabilities (non-negative; masked ids 0).</param>
    /// <param name="topP">in (0, 1].</param>
    /// <param name="scratch">at least <paramref name="probs"/>.Length floats, overwritten.</param>
    /// <returns>the threshold; 0 when the whole row's mass falls short of top_p (rounding, or a
    /// NaN in the row): then every id stays.</returns>
    public static float Find(ReadOnlySpan<float> probs, double topP, Span<float> scratch)
    {
        var mass = _mass ??= new double[Buckets];
        Array.Clear(mass);
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(probs);
        for (int i = 0; i < bits.Length; i++) mass[bits[i] >> 16] += probs[i];
        double above = 0;   // mass of the buckets above the one being looked at
        int b = Buckets - 1;
        for (; b >= 0; b--)
        {
            if (above + mass[b] >= topP) break;
            above += mass[b];
        }
        if (b < 0) return 0f;
        int n = 0;
        for (int i = 0; i < bits.Length; i++)
            if (bits[i] >> 16 == (uint)b) scratch[n++] = probs[i];
        if (n == 0) return 0f;   // top_p ≤ 0 (refused by validation) would stop at an empty bucket
        var bucket = scratch[..n];
        bucket.Sort();
        for (int i = n - 1; i >= 0; i--)
        {
            above += bucket[i];
            if (above >= topP) return bucket[i];
        }
        return bucket[0];   // the bucket's sum and its ids' sum rounded apart: the crossing is in it
    }
}
