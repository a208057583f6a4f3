namespace RecurrentGemma.Engine;

/// <summary>
/// A row's random numbers: draw n of a stream is a SplitMix64 hash of (seed, n), mapped to
/// (0, 1]. Counter-based, so it depends on nothing but the seed and how many tokens the row has
/// drawn — not on the batch, the device or the process.
/// </summary>
public static class SeededUniform
{
    public static double Draw(ulong seed, long index)
    {
        ulong z = seed + 0x9E3779B97F4A7C15UL * (ulong)(index + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return ((z >> 11) + 1) * (1.0 / (1UL << 53));
    }

    /// <summary>The stream of one choice of a request: its seed, or a fresh one drawn at admission.</summary>
    public static ulong StreamSeed(long? seed, int choice) =>
        seed is { } v ? unchecked((ulong)v * 0x9E3779B97F4A7C15UL + (ulong)choice) : (ulong)Random.Shared.NextInt64();
}
