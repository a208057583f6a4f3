using RecurrentGemma.Engine;

namespace RecurrentGemma.Inference.Constraints;

/// <summary>
/// vLLM's allowed_token_ids: only these ids may be sampled, every step (a classifier's labels, a
/// fixed alphabet). The model's end ids are not added: as in vLLM, an answer ends by one only when
/// the list holds it, otherwise at max_tokens or a stop string. The mask is built once and shared
/// by every choice (nothing in it changes while generating).
/// </summary>
internal sealed class AllowedTokensConstraint : ITokenConstraint
{
    readonly ulong[] _mask;

    public AllowedTokensConstraint(IReadOnlyList<int> ids, int vocab)
    {
        _mask = new ulong[(vocab + 63) / 64];
        foreach (int id in ids) _mask[id >> 6] |= 1UL << (id & 63);
    }

    public ulong[] Allowed() => _mask;

    public bool Advance(int tokenId) => (uint)tokenId < (uint)(_mask.Length * 64) && (_mask[tokenId >> 6] >> (tokenId & 63) & 1) != 0;

    public bool MustStop => false;

    public ITokenConstraint Fork() => this;
}
