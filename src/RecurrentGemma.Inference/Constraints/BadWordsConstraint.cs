using RecurrentGemma.Engine;

namespace RecurrentGemma.Inference.Constraints;

/// <summary>
/// vLLM's bad_words: each word as the ids it encodes to (on its own and after a space, as it
/// appears inside text) may never be completed — when the last ids sampled are all of a banned
/// sequence but its last, that last id is masked out. Only this choice's sampled ids count (the
/// prompt may hold the word). The all-allowed mask is shared; a step that bans something gets a copy.
/// </summary>
internal sealed class BadWordsConstraint : ITokenConstraint
{
    readonly IReadOnlyList<int[]> _words;
    readonly ulong[] _all;
    readonly List<int> _sampled;

    public BadWordsConstraint(IReadOnlyList<int[]> words, int vocab) : this(words, AllOf(vocab), []) { }

    BadWordsConstraint(IReadOnlyList<int[]> words, ulong[] all, List<int> sampled) { _words = words; _all = all; _sampled = sampled; }

    static ulong[] AllOf(int vocab)
    {
        var mask = new ulong[(vocab + 63) / 64];
        for (int id = 0; id < vocab; id++) mask[id >> 6] |= 1UL << (id & 63);
        return mask;
    }

    /// <summary>The ids the next token may not be: each banned word's last id where the rest of it was just sampled.</summary>
    IEnumerable<int> Banned()
    {
        foreach (var word in _words)
        {
            int before = word.Length - 1;
            if (before > _sampled.Count) continue;
            bool follows = true;
            for (int i = 0; i < before && follows; i++) follows = _sampled[_sampled.Count - before + i] == word[i];
            if (follows) yield return word[^1];
        }
    }

    public ulong[] Allowed()
    {
        ulong[]? mask = null;
        foreach (int id in Banned())
        {
            mask ??= (ulong[])_all.Clone();
            mask[id >> 6] &= ~(1UL << (id & 63));
        }
        return mask ?? _all;
    }

    public bool Advance(int tokenId)
    {
        if (Banned().Contains(tokenId)) return false;
        _sampled.Add(tokenId);
        return true;
    }

    public bool MustStop => false;

    public ITokenConstraint Fork() => new BadWordsConstraint(_words, _all, [.. _sampled]);
}
