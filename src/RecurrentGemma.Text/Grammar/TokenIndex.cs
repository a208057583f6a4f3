using System.Runtime.CompilerServices;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// Every vocabulary id's bytes — exactly what the detokenizer emits for it (byte-fallback ids are
/// one raw byte) — in a trie, built once per tokenizer. The ids a grammar allows next are found
/// by walking the trie with the matcher: a branch is cut at the first byte the grammar refuses,
/// and shared prefixes are matched once. Control, unknown and marker-like ids never carry
/// constrained text (stop ids are the constraint's business).
/// </summary>
public sealed class TokenIndex
{
    static readonly ConditionalWeakTable<GemmaTokenizer, TokenIndex> ByTokenizer = new();

    readonly byte[][] _bytes;
    // The trie, flattened: node n's children are _edgeNode[_first[n] .. _first[n+1]) with labels _edgeByte.
    readonly int[] _first;
    readonly byte[] _edgeByte;
    readonly int[] _edgeNode;
    readonly int[] _tokenFirst;   // ids ending at node n: _tokens[_tokenFirst[n] .. _tokenFirst[n+1])
    readonly int[] _tokens;
    readonly ConditionalWeakTable<GrammarMatcher, Dictionary<int, ulong[]>> _masks = new();

    public int Vocab { get; }
    public int Nodes => _first.Length - 1;

    public static TokenIndex For(GemmaTokenizer tokenizer) => ByTokenizer.GetValue(tokenizer, t => new TokenIndex(t));

    TokenIndex(GemmaTokenizer tokenizer)
    {
        Vocab = tokenizer.VocabSize;
        _bytes = new byte[Vocab][];
        var markers = tokenizer.MarkerIds;
        for (int id = 0; id < Vocab; id++)
        {
            var type = tokenizer.Model.Pieces[id].Type;
            if (type is PieceType.Control or PieceType.Unknown || markers.Contains(id)) { _bytes[id] = []; continue; }
            _bytes[id] = tokenizer.Surface(id) is { } surface ? System.Text.Encoding.UTF8.GetBytes(surface) : [(byte)tokenizer.ByteValue(id)];
        }

        // Build from the ids sorted by their bytes: each node's children come out in order.
        var order = Enumerable.Range(0, Vocab).Where(i => _bytes[i].Length > 0).ToArray();
        Array.Sort(order, (x, y) => _bytes[x].AsSpan().SequenceCompareTo(_bytes[y]));
        var children = new List<List<(byte Label, int Node)>> { new() };
        var ends = new List<List<int>> { new() };
        foreach (var id in order)
        {
            int node = 0;
            foreach (var b in _bytes[id])
            {
                var list = children[node];
                if (list.Count > 0 && list[^1].Label == b) node = list[^1].Node;
                else
                {
                    children.Add([]);
                    ends.Add([]);
                    list.Add((b, children.Count - 1));
                    node = children.Count - 1;
                }
            }
            ends[node].Add(id);
        }
        int n = children.Count;
        _first = new int[n + 1];
        _tokenFirst = new int[n + 1];
        for (int i = 0; i < n; i++)
        {
            _first[i + 1] = _first[i] + children[i].Count;
            _tokenFirst[i + 1] = _tokenFirst[i] + ends[i].Count;
        }
        _edgeByte = new byte[_first[n]];
        _edgeNode = new int[_first[n]];
        _tokens = new int[_tokenFirst[n]];
        for (int i = 0; i < n; i++)
        {
            for (int c = 0; c < children[i].Count; c++) (_edgeByte[_first[i] + c], _edgeNode[_first[i] + c]) = children[i][c];
            ends[i].CopyTo(_tokens, _tokenFirst[i]);
        }
    }

    /// <summary>The bytes an id stands for (empty for ids that never carry constrained text).</summary>
    public ReadOnlySpan<byte> Bytes(int id) => _bytes[id];

    /// <summary>Bit i set: id i's bytes can come next in <paramref name="state"/>. Cached per state.</summary>
    public ulong[] Allowed(GrammarMatcher matcher, MatchState state)
    {
        var cache = _masks.GetValue(matcher, _ => new Dictionary<int, ulong[]>());
        lock (cache)
            if (cache.TryGetValue(state.Id, out var known)) return known;
        var mask = new ulong[(Vocab + 63) / 64];
        if (state.CanContinue) Walk(matcher, state, mask);
        lock (cache)
        {
            if (cache.Count >= 1024) cache.Clear();   // 1024 masks of a 256k vocabulary: 32 MiB
            cache[state.Id] = mask;
        }
        return mask;
    }

    void Walk(GrammarMatcher matcher, MatchState root, ulong[] mask)
    {
        var stack = new Stack<(int Node, MatchState State)>();
        stack.Push((0, root));
        while (stack.Count > 0)
        {
            var (node, state) = stack.Pop();
            for (int e = _first[node]; e < _first[node + 1]; e++)
            {
                var next = matcher.Advance(state, _edgeByte[e]);
                if (next.IsDead) continue;
                int child = _edgeNode[e];
                for (int t = _tokenFirst[child]; t < _tokenFirst[child + 1]; t++) mask[_tokens[t] >> 6] |= 1UL << (_tokens[t] & 63);
                if (next.CanContinue && _first[child + 1] > _first[child]) stack.Push((child, next));
            }
        }
    }
}
