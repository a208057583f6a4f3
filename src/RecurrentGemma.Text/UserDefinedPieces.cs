namespace RecurrentGemma.Text;

/// <summary>
/// The USER_DEFINED pieces of a SentencePiece model (turn markers, newline/space/tab runs,
/// &lt;unusedN&gt;, HTML tags…), matched atomically in normalized text — longest match first,
/// before any BPE — exactly as SentencePiece does. Control pieces (&lt;bos&gt;, &lt;eos&gt;, &lt;pad&gt;)
/// are not among them, so text can never produce a control id.
///
/// Some user-defined pieces act as markers (Gemma's turn markers, &lt;start_of_image&gt;, &lt;mask&gt;,
/// &lt;unusedN&gt;, [@BOS@]): only the chat template may emit them, or a user could forge a turn by
/// typing one. They are told apart from the file itself, without a list of ids: a piece is
/// *ordinary* when it is a whitespace run, or a markup tag that comes with its closing partner
/// (&lt;b&gt; and &lt;/b&gt;, &lt;table&gt; and &lt;/table&gt;); every other user-defined piece is *marker-like*.
/// </summary>
internal sealed class UserDefinedPieces
{
    readonly Dictionary<char, (string Text, int Id, bool Marker)[]> _byFirstChar;

    public UserDefinedPieces(SentencePieceModel model)
    {
        var all = model.Pieces
            .Select((p, id) => (p, id))
            .Where(x => x.p.Type == PieceType.UserDefined && x.p.Text.Length > 0)
            .ToList();
        var texts = all.Select(x => x.p.Text).ToHashSet(StringComparer.Ordinal);
        _byFirstChar = all
            .GroupBy(x => x.p.Text[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(x => x.p.Text.Length)
                .Select(x => (x.p.Text, x.id, IsMarker(x.p.Text, texts))).ToArray());
        Count = all.Count;
        MarkerIds = _byFirstChar.Values.SelectMany(v => v).Where(x => x.Marker).Select(x => x.Id).ToHashSet();
    }

    public int Count { get; }
    /// <summary>Ids of the marker-like pieces (see the class comment).</summary>
    public IReadOnlySet<int> MarkerIds { get; }

    static bool IsMarker(string text, HashSet<string> all)
    {
        if (text.All(c => c is '\u2581' or ' ' or '\n' or '\t' or '\r')) return false;
        if (text.Length > 2 && text[0] == '<' && text[^1] == '>')
        {
            var name = text[1..^1];
            if (name.StartsWith('/')) return !all.Contains("<" + name[1..] + ">");
            return !all.Contains("</" + name + ">");
        }
        return true;
    }

    /// <summary>
    /// Splits normalized text into runs of ordinary text (id −1) and matched pieces (their id).
    /// With <paramref name="markersAsText"/>, a marker-like piece is not matched: its text stays
    /// ordinary, and a run boundary is put right after its first character so that BPE, which
    /// only merges within a run, cannot rebuild the marker from its characters either.
    /// </summary>
    public void Split(ReadOnlySpan<char> text, List<(int Start, int Length, int Id)> parts, bool markersAsText = false)
    {
        int plainStart = 0;
        for (int i = 0; i < text.Length;)
        {
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                var rest = text[i..];
                int matched = -1;
                foreach (var (piece, id, marker) in candidates)
                    if (rest.StartsWith(piece, StringComparison.Ordinal))
                    {
                        if (marker && markersAsText)
                        {
                            parts.Add((plainStart, i + 1 - plainStart, -1));
                            matched = 0;
                            break;
                        }
                        if (i > plainStart) parts.Add((plainStart, i - plainStart, -1));
                        parts.Add((i, piece.Length, id));
                        matched = piece.Length;
                        break;
                    }
                if (matched > 0) { i += matched; plainStart = i; continue; }
                if (matched == 0) { i++; plainStart = i; continue; }
            }
            i++;
        }
        if (text.Length > plainStart) parts.Add((plainStart, text.Length - plainStart, -1));
    }
}
