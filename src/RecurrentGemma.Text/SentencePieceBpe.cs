using System.Buffers;
using System.Text;

namespace RecurrentGemma.Text;

/// <summary>
/// SentencePiece's BPE encoding, written from its definition: split a segment into characters;
/// repeatedly merge the adjacent pair whose concatenation is a vocabulary piece with the highest
/// score, the <b>leftmost</b> pair on ties; then emit each symbol's id, or its UTF-8 bytes as
/// byte pieces when it is not in the vocabulary (byte fallback).
/// Microsoft.ML.Tokenizers breaks ties rightmost-first, which only matters where tied pairs
/// overlap (runs such as "aaaa" or "ababab"); <see cref="GemmaTokenizer"/> routes those segments here.
/// </summary>
internal sealed class SentencePieceBpe
{
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _ids;
    readonly float[] _scores;
    readonly int _byteBase;
    readonly int _unkId;

    public SentencePieceBpe(SentencePieceModel model)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        _scores = new float[model.Pieces.Count];
        _byteBase = -1;
        _unkId = 0;
        for (int i = 0; i < model.Pieces.Count; i++)
        {
            var p = model.Pieces[i];
            _scores[i] = p.Score;
            // As SentencePiece: normal, user-defined and unused pieces take part in merges.
            if (p.Type is PieceType.Normal or PieceType.UserDefined or PieceType.Unused) ids.TryAdd(p.Text, i);
            if (p.Type == PieceType.Byte && p.Text == "<0x00>") _byteBase = i;
            if (p.Type == PieceType.Unknown) _unkId = i;
        }
        _ids = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        MaxPieceChars = ids.Keys.Max(k => k.Length);
    }

    /// <summary>Length in chars of the longest mergeable piece (bounds where ties can overlap).</summary>
    public int MaxPieceChars { get; }

    public bool TryGetId(ReadOnlySpan<char> piece, out int id) => _ids.TryGetValue(piece, out id);

    readonly record struct Candidate(int Left, int Right, int Length);

    static readonly Comparer<(float Score, int Left)> HighestScoreThenLeftmost =
        Comparer<(float Score, int Left)>.Create((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left));

    /// <summary>Queues the pair (left, right) when their concatenation is a piece.</summary>
    void Consider(ReadOnlySpan<char> text, int[] len, int left, int right, PriorityQueue<Candidate, (float, int)> agenda)
    {
        if (left < 0 || right < 0) return;
        int total = len[left] + len[right];
        if (_ids.TryGetValue(text.Slice(left, total), out int id))
            agenda.Enqueue(new Candidate(left, right, total), (_scores[id], left));
    }

    /// <summary>Appends the ids of one normalized segment (no user-defined pieces inside).</summary>
    public void Encode(ReadOnlySpan<char> text, List<int> output)
    {
        if (text.IsEmpty) return;
        int n = text.Length;
        var pool = ArrayPool<int>.Shared;
        int[] len = pool.Rent(n), prev = pool.Rent(n), next = pool.Rent(n);
        try
        {
            // Symbols start as characters (a surrogate pair is one character); index = start offset.
            int last = -1;
            for (int i = 0; i < n;)
            {
                int l = char.IsHighSurrogate(text[i]) && i + 1 < n && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
                len[i] = l; prev[i] = last; next[i] = -1;
                if (last >= 0) next[last] = i;
                for (int k = 1; k < l; k++) len[i + k] = 0;
                last = i;
                i += l;
            }

            var agenda = new PriorityQueue<Candidate, (float, int)>(HighestScoreThenLeftmost);
            for (int i = 0; i >= 0 && i < n; i = next[i]) Consider(text, len, i, next[i], agenda);

            while (agenda.TryDequeue(out var c, out _))
            {
                // Skip stale candidates: either side merged since this pair was queued.
                if (len[c.Left] == 0 || next[c.Left] != c.Right || len[c.Left] + len[c.Right] != c.Length) continue;
                len[c.Left] = c.Length;
                len[c.Right] = 0;
                next[c.Left] = next[c.Right];
                if (next[c.Right] >= 0) prev[next[c.Right]] = c.Left;
                Consider(text, len, prev[c.Left], c.Left, agenda);
                Consider(text, len, c.Left, next[c.Left], agenda);
            }

            Span<byte> utf8 = stackalloc byte[8];
            for (int i = 0; i >= 0 && i < n; i = next[i])
            {
                var symbol = text.Slice(i, len[i]);
                if (_ids.TryGetValue(symbol, out int id)) output.Add(id);
                else if (_byteBase >= 0)
                {
                    int count = Encoding.UTF8.GetBytes(symbol, utf8);
                    for (int b = 0; b < count; b++) output.Add(_byteBase + utf8[b]);
                }
                else output.Add(_unkId);
            }
        }
        finally
        {
            pool.Return(len); pool.Return(prev); pool.Return(next);
        }
    }
}
