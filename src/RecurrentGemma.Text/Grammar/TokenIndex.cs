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
    readonly Trie _all;        // every id that can carry constrained text
    readonly Trie _special;    // the ids that are not a run of plain characters (see PlainBudget)
    readonly ulong[][] _plainUpTo;   // [c]: the ids that are runs of 1..c plain characters
    readonly ConditionalWeakTable<GrammarMatcher, Dictionary<int, ulong[]>> _masks = new();
    // Masks of string states by what they depend on (GrammarMatcher.PlainKey): positions deep in
    // a long string, or at the same count left in another row, share one.
    readonly ConditionalWeakTable<GrammarMatcher, Dictionary<string, ulong[]>> _plainMasks = new();
    readonly int _horizon;   // no id is longer than this many characters

    public int Vocab { get; }
    public int Nodes => _all.Nodes;

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
        var carrying = Enumerable.Range(0, Vocab).Where(i => _bytes[i].Length > 0).ToArray();
        var plain = carrying.Select(i => PlainChars(_bytes[i])).ToArray();
        _all = new Trie(_bytes, carrying);
        _special = new Trie(_bytes, carrying.Where((_, j) => plain[j] < 0).ToArray());
        int longest = plain.DefaultIfEmpty(0).Max();
        _horizon = carrying.Select(i => _bytes[i].Length).DefaultIfEmpty(0).Max() + 1;
        _plainUpTo = new ulong[Math.Max(0, longest) + 1][];
        for (int c = 0; c <= longest; c++)
        {
            var mask = c == 0 ? new ulong[(Vocab + 63) / 64] : (ulong[])_plainUpTo[c - 1].Clone();
            for (int j = 0; j < carrying.Length; j++)
                if (plain[j] == c && c > 0) mask[carrying[j] >> 6] |= 1UL << (carrying[j] & 63);
            _plainUpTo[c] = mask;
        }
    }

    /// <summary>How many characters an id's bytes are when they are all plain — valid UTF-8
    /// characters other than '"', '\' and controls (exactly what a JSON string takes as itself);
    /// −1 otherwise (a quote, an escape, a control, or part of a character).</summary>
    static int PlainChars(byte[] bytes)
    {
        int count = 0;
        var rest = bytes.AsSpan();
        while (rest.Length > 0)
        {
            if (System.Text.Rune.DecodeFromUtf8(rest, out var rune, out int used) != System.Buffers.OperationStatus.Done) return -1;
            if (rune.Value < 0x20 || rune.Value == '"' || rune.Value == '\\') return -1;
            rest = rest[used..];
            count++;
        }
        return count;
    }

    /// <summary>The bytes an id stands for (empty for ids that never carry constrained text).</summary>
    public ReadOnlySpan<byte> Bytes(int id) => _bytes[id];

    /// <summary>Bit i set: id i's bytes can come next in <paramref name="state"/>. Cached per state.</summary>
    public ulong[] Allowed(GrammarMatcher matcher, MatchState state)
    {
        var cache = _masks.GetValue(matcher, _ => new Dictionary<int, ulong[]>());
        lock (cache)
            if (cache.TryGetValue(state.Id, out var known)) return known;
        ulong[] mask;
        int budget = state.CanContinue ? matcher.PlainBudget(state) : -1;
        if (budget >= 0)
        {
            var key = matcher.PlainKey(state, _horizon)!;
            var shared = _plainMasks.GetValue(matcher, _ => new Dictionary<string, ulong[]>());
            lock (shared)
                if (shared.TryGetValue(key, out var same)) { mask = same; goto Store; }
            // Inside a counted string: every run of at most `budget` plain characters is allowed as
            // a whole; only the other ids (quotes, escapes, controls, partial characters) are walked.
            mask = (ulong[])_plainUpTo[(int)Math.Min((long)budget, _plainUpTo.Length - 1)].Clone();
            _special.Walk(matcher, state, mask);
            lock (shared)
            {
                if (shared.Count >= 1024) shared.Clear();   // as the per-state cache: at most 32 MiB
                shared[key] = mask;
            }
        }
        else
        {
            mask = new ulong[(Vocab + 63) / 64];
            if (state.CanContinue) _all.Walk(matcher, state, mask);
        }
    Store:
        lock (cache)
        {
            if (cache.Count >= 1024) cache.Clear();   // 1024 masks of a 256k vocabulary: 32 MiB
            cache[state.Id] = mask;
        }
        return mask;
    }

    /// <summary>Ids' bytes in a trie, flattened: node n's children are edgeNode[first[n] .. first[n+1])
    /// with labels edgeByte; the ids ending at node n are tokens[tokenFirst[n] .. tokenFirst[n+1]).</summary>
    sealed class Trie
    {
        readonly int[] _first;
        readonly byte[] _edgeByte;
        readonly int[] _edgeNode;
        readonly int[] _tokenFirst;
        readonly int[] _tokens;

        public int Nodes => _first.Length - 1;

        public Trie(byte[][] bytes, int[] ids)
        {
            // Built from the ids sorted by their bytes: each node's children come out in order.
            var order = ids.ToArray();
            Array.Sort(order, (x, y) => bytes[x].AsSpan().SequenceCompareTo(bytes[y]));
            var children = new List<List<(byte Label, int Node)>> { new() };
            var ends = new List<List<int>> { new() };
            foreach (var id in order)
            {
                int node = 0;
                foreach (var b in bytes[id])
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

        /// <summary>Sets the bits of the ids the grammar accepts from <paramref name="root"/>: a branch
        /// is cut at the first byte the grammar refuses, shared prefixes are matched once.</summary>
        public void Walk(GrammarMatcher matcher, MatchState root, ulong[] mask)
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
}
