namespace RecurrentGemma.Engine;

/// <summary>
/// A 64-bit polynomial hash of token-id sequences, and of every prefix of a prompt at once. A
/// stored state remembers the hash of the ids it consumed; a lookup computes the prompt's prefix
/// hashes once (linear in the prompt) and then tests each candidate in O(1) — "is this state's
/// sequence the prompt's first n ids?" — however long the conversations are. Only the chosen
/// candidate is then compared id by id, so a hash collision can never continue a wrong state.
/// </summary>
public static class TokenHash
{
    const ulong Base = 0x100000001B3UL;   // odd, so multiplication mod 2^64 is invertible
    const ulong Seed = 0xCBF29CE484222325UL;

    static ulong Step(ulong h, int token) => (h ^ (uint)token) * Base + 0x9E3779B97F4A7C15UL;

    public static ulong Of(IReadOnlyList<int> tokens)
    {
        ulong h = Seed;
        for (int i = 0; i < tokens.Count; i++) h = Step(h, tokens[i]);
        return h;
    }

    /// <summary>prefixes[n] = hash of the first n ids (n = 0 … count).</summary>
    public static ulong[] Prefixes(IReadOnlyList<int> tokens)
    {
        var p = new ulong[tokens.Count + 1];
        p[0] = Seed;
        for (int i = 0; i < tokens.Count; i++) p[i + 1] = Step(p[i], tokens[i]);
        return p;
    }

    /// <summary>Whether <paramref name="prefix"/> is exactly the first ids of <paramref name="of"/>.</summary>
    public static bool IsPrefix(IReadOnlyList<int> prefix, IReadOnlyList<int> of)
    {
        if (prefix.Count > of.Count) return false;
        for (int i = 0; i < prefix.Count; i++) if (prefix[i] != of[i]) return false;
        return true;
    }
}
