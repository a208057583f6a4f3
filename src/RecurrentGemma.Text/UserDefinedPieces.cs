namespace RecurrentGemma.Text;

/// <summary>
/// The USER_DEFINED pieces of a SentencePiece model (turn markers, newline/space/tab runs,
/// &lt;unusedN&gt;, HTML tags…), matched atomically in normalized text — longest match first,
/// before any BPE — exactly as SentencePiece does. Control pieces (&lt;bos&gt;, &lt;eos&gt;, &lt;pad&gt;)
/// are not among them, so text can never produce a control id.
/// </summary>
internal sealed class UserDefinedPieces
{
    readonly Dictionary<char, (string Text, int Id)[]> _byFirstChar;

    public UserDefinedPieces(SentencePieceModel model)
    {
        _byFirstChar = model.Pieces
            .Select((p, id) => (p, id))
            .Where(x => x.p.Type == PieceType.UserDefined && x.p.Text.Length > 0)
            .GroupBy(x => x.p.Text[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(x => x.p.Text.Length).Select(x => (x.p.Text, x.id)).ToArray());
        Count = _byFirstChar.Values.Sum(v => v.Length);
    }

    public int Count { get; }

    /// <summary>
    /// Splits normalized text into runs of ordinary text (id −1) and matched pieces (their id).
    /// </summary>
    public void Split(ReadOnlySpan<char> text, List<(int Start, int Length, int Id)> parts)
    {
        int plainStart = 0;
        for (int i = 0; i < text.Length;)
        {
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                var rest = text[i..];
                int matched = -1;
                foreach (var (piece, id) in candidates)
                    if (rest.StartsWith(piece, StringComparison.Ordinal))
                    {
                        if (i > plainStart) parts.Add((plainStart, i - plainStart, -1));
                        parts.Add((i, piece.Length, id));
                        matched = piece.Length;
                        break;
                    }
                if (matched > 0) { i += matched; plainStart = i; continue; }
            }
            i++;
        }
        if (text.Length > plainStart) parts.Add((plainStart, text.Length - plainStart, -1));
    }
}
