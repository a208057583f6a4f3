using RecurrentGemma.Engine;
using RecurrentGemma.Text.Grammar;

namespace RecurrentGemma.Inference.Constraints;

/// <summary>
/// A grammar as the engine's <see cref="ITokenConstraint"/>: the allowed ids are those whose bytes
/// the grammar accepts next (<see cref="TokenIndex"/>), plus the stop ids once the text is a
/// complete sentence. Advancing feeds a sampled id's bytes to the matcher.
/// </summary>
internal sealed class GrammarConstraint(GrammarMatcher matcher, TokenIndex index, IReadOnlyCollection<int> stopIds) : ITokenConstraint
{
    MatchState _state = matcher.Start;

    public ulong[] Allowed()
    {
        var state = _state;
        var mask = index.Allowed(matcher, state);
        bool any = false;
        foreach (var word in mask) if (word != 0) { any = true; break; }
        if (!state.Complete && any) return mask;
        // Complete (or, defensively, stuck): the stop ids may end the text.
        var copy = (ulong[])mask.Clone();
        foreach (var id in stopIds)
            if ((uint)id < (uint)index.Vocab) copy[id >> 6] |= 1UL << (id & 63);
        return copy;
    }

    public bool Advance(int tokenId)
    {
        if ((uint)tokenId >= (uint)index.Vocab) return false;
        var bytes = index.Bytes(tokenId);
        if (bytes.IsEmpty) return false;
        var next = matcher.Advance(_state, bytes);
        if (next.IsDead) return false;
        _state = next;
        return true;
    }

    public bool MustStop => _state.Complete && !_state.CanContinue;

    public ITokenConstraint Fork() => new GrammarConstraint(matcher, index, stopIds) { _state = _state };
}
