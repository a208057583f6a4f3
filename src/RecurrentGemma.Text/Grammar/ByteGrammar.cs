namespace RecurrentGemma.Text.Grammar;

/// <summary>A set of bytes (256 bits).</summary>
public readonly record struct ByteSet(ulong A, ulong B, ulong C, ulong D)
{
    public bool Contains(byte b) => (b >> 6) switch
    {
        0 => (A >> b & 1) != 0,
        1 => (B >> (b - 64) & 1) != 0,
        2 => (C >> (b - 128) & 1) != 0,
        _ => (D >> (b - 192) & 1) != 0,
    };

    public static ByteSet Of(params byte[] bytes) => Range(bytes, []);

    public static ByteSet Range(byte from, byte to) => Range([], [(from, to)]);

    public static ByteSet Range(byte[] singles, (byte From, byte To)[] ranges)
    {
        Span<ulong> w = stackalloc ulong[4];
        foreach (var b in singles) w[b >> 6] |= 1UL << (b & 63);
        foreach (var (from, to) in ranges)
            for (int b = from; b <= to; b++) w[b >> 6] |= 1UL << (b & 63);
        return new ByteSet(w[0], w[1], w[2], w[3]);
    }

    public ByteSet Except(ByteSet other) => new(A & ~other.A, B & ~other.B, C & ~other.C, D & ~other.D);
    public ByteSet And(ByteSet other) => new(A & other.A, B & other.B, C & other.C, D & other.D);
    public bool IsEmpty => (A | B | C | D) == 0;
}

/// <summary>
/// A context-free grammar over bytes, the form every constraint (a JSON schema, the tool-call
/// format) compiles to: rules are alternatives of symbol sequences; a symbol is a byte set
/// (terminal) or another rule. Built right-recursive (repetition recurses on the right), which
/// is what the stack-based <see cref="GrammarMatcher"/> needs to stay finite.
/// </summary>
public sealed class ByteGrammar
{
    internal readonly List<int[][]> Rules = [];
    internal readonly List<ByteSet> Terminals = [];
    readonly Dictionary<ByteSet, int> _terminalIds = [];

    public int Root { get; set; } = -1;

    /// <summary>Rules that match one character and accept every "plain" character — a valid UTF-8
    /// character other than '"', '\' and controls — as itself (JSON's string character is one).</summary>
    internal readonly HashSet<int> PlainCharRules = [];
    /// <summary>
    /// Positions (rule, index in its first alternative) where a repetition of a plain-character
    /// rule expects its next character, with how many characters it still allows from there
    /// (<see cref="Unbounded"/> for no maximum). A state sitting there accepts a run of plain
    /// characters exactly when it has at most that many, which is what lets
    /// <see cref="TokenIndex"/> answer for most of the vocabulary at once.
    /// </summary>
    internal readonly Dictionary<(int Rule, int Pos), int> CharBudget = [];
    /// <summary>At the same positions: how many more characters must come before the repetition
    /// may end (its minimum still to go; 0 in the optional part).</summary>
    internal readonly Dictionary<(int Rule, int Pos), int> CharsRequired = [];
    internal const int Unbounded = int.MaxValue;
    public int RuleCount => Rules.Count;

    /// <summary>A symbol for a terminal byte set (encoded as a negative number).</summary>
    public int Terminal(ByteSet set)
    {
        if (!_terminalIds.TryGetValue(set, out var id))
        {
            id = Terminals.Count;
            Terminals.Add(set);
            _terminalIds[set] = id;
        }
        return ~id;
    }

    public int Byte(byte b) => Terminal(ByteSet.Of(b));

    /// <summary>A rule not yet defined (for recursion); define it with <see cref="Define"/>.</summary>
    public int Declare()
    {
        Rules.Add([]);
        return Rules.Count - 1;
    }

    public void Define(int rule, params int[][] alternatives) => Rules[rule] = alternatives;

    public int Rule(params int[][] alternatives)
    {
        int r = Declare();
        Define(r, alternatives);
        return r;
    }

    /// <summary>A sequence of symbols as one rule.</summary>
    public int Seq(params int[] symbols) => Rule(symbols);

    /// <summary>Any one of the given rules or symbols.</summary>
    public int Choice(params int[] symbols) => Rule(symbols.Select(s => new[] { s }).ToArray());

    /// <summary>The exact bytes of a string (UTF-8).</summary>
    public int Literal(string text) => Seq(System.Text.Encoding.UTF8.GetBytes(text).Select(Byte).ToArray());

    public int Literal(ReadOnlySpan<byte> bytes)
    {
        var symbols = new int[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) symbols[i] = Byte(bytes[i]);
        return Seq(symbols);
    }

    public int Empty() => Rule(Array.Empty<int>());   // one alternative with no symbols

    public int Optional(int symbol) => Rule([symbol], []);

    /// <summary>Zero or more (right-recursive: S → x S | ε). The symbol must not match the empty string.</summary>
    public int Star(int symbol)
    {
        int s = Declare();
        Define(s, [symbol, s], []);
        if (PlainCharRules.Contains(symbol)) { CharBudget[(s, 0)] = Unbounded; CharsRequired[(s, 0)] = 0; }
        return s;
    }

    /// <summary>Between <paramref name="min"/> and <paramref name="max"/> (null: no bound) repetitions,
    /// each optionally preceded by <paramref name="separator"/> after the first.</summary>
    public int Repeat(int symbol, int min, int? max, int? separator = null)
    {
        if (max is { } m && m < min) throw new GrammarException($"a maximum count ({m}) below the minimum ({min})", "");
        // After the first item each further item is [separator] item.
        int next = separator is { } sep ? Seq(sep, symbol) : symbol;
        bool counted = separator is null && PlainCharRules.Contains(symbol);
        int tail;   // what may follow once `min` items are in
        if (max is null) tail = Star(next);
        else
        {
            int extra = max.Value - Math.Max(min, 1);
            tail = Empty();
            for (int i = 0; i < extra; i++)
            {
                tail = Rule([next, tail], []);
                if (counted) { CharBudget[(tail, 0)] = i + 1; CharsRequired[(tail, 0)] = 0; }
            }
        }
        if (min == 0)
        {
            if (max == 0) return Empty();
            int first = Seq(symbol, tail);
            if (counted) { CharBudget[(first, 0)] = max ?? Unbounded; CharsRequired[(first, 0)] = 0; }
            return Optional(first);
        }
        var parts = new List<int> { symbol };
        for (int i = 1; i < min; i++) parts.Add(next);
        parts.Add(tail);
        int seq = Seq([.. parts]);
        if (counted)
            for (int i = 0; i < min; i++) { CharBudget[(seq, i)] = max is { } m2 ? m2 - i : Unbounded; CharsRequired[(seq, i)] = min - i; }
        return seq;
    }

    internal ByteSet TerminalSet(int symbol) => Terminals[~symbol];

    /// <summary>
    /// The fewest and most bytes <paramref name="rule"/> matches; false where it recurses (no
    /// finite bound to give). What a format writes is then known to fit a length limit or not.
    /// </summary>
    public bool TryLengthRange(int rule, out int min, out int max)
    {
        var memo = new Dictionary<int, (int Min, int Max)>();
        var open = new HashSet<int>();
        bool cyclic = false;
        (int Min, int Max) Of(int sym)
        {
            if (sym < 0) return (1, 1);
            if (memo.TryGetValue(sym, out var known)) return known;
            if (!open.Add(sym)) { cyclic = true; return (0, 0); }
            (int Min, int Max) best = (int.MaxValue, 0);
            foreach (var alt in Rules[sym])
            {
                int lo = 0, hi = 0;
                foreach (int s in alt) { var (a, b) = Of(s); lo += a; hi += b; }
                best = (Math.Min(best.Min, lo), Math.Max(best.Max, hi));
            }
            open.Remove(sym);
            return memo[sym] = best;
        }
        (min, max) = Of(rule);
        return !cyclic && min != int.MaxValue;
    }

    /// <summary>
    /// Removes every alternative that cannot derive a finite byte string (one that goes through a
    /// rule that only ever recurses, or an empty byte set), so that the matcher never enters a
    /// branch it could not finish: a schema's recursion without a way out (a property that is
    /// required and refers back to its own object, a $ref to itself) would otherwise let
    /// generation start a document that can only nest until max_tokens. Returns whether
    /// <paramref name="rule"/> itself derives one. Linear in the grammar's size (a worklist over
    /// the uses of each rule, not repeated passes).
    /// </summary>
    public bool PruneUnproductive(int rule)
    {
        int n = Rules.Count;
        var productive = new bool[n];
        var pending = new int[n][];                              // per rule and alternative: symbols not yet known productive
        var users = new List<(int Rule, int Alt)>?[n];
        var ready = new Queue<int>();
        for (int r = 0; r < n; r++)
        {
            var alts = Rules[r];
            pending[r] = new int[alts.Length];
            for (int a = 0; a < alts.Length; a++)
            {
                foreach (int sym in alts[a])
                {
                    if (sym < 0) { if (TerminalSet(sym).IsEmpty) pending[r][a]++; }   // an empty set never matches: never counted down
                    else { pending[r][a]++; (users[sym] ??= []).Add((r, a)); }
                }
                if (pending[r][a] == 0 && !productive[r]) { productive[r] = true; ready.Enqueue(r); }
            }
        }
        while (ready.TryDequeue(out int done))
            foreach (var (r, a) in users[done] ?? [])
                if (--pending[r][a] == 0 && !productive[r]) { productive[r] = true; ready.Enqueue(r); }

        for (int r = 0; r < n; r++)
        {
            if (Array.TrueForAll(pending[r], p => p == 0)) continue;
            if (pending[r].Length > 0 && pending[r][0] != 0)
            {
                // The first alternative goes: character budgets recorded against its positions no longer apply.
                foreach (var key in CharBudget.Keys.Where(k => k.Rule == r).ToList()) { CharBudget.Remove(key); CharsRequired.Remove(key); }
            }
            var p = pending[r];
            Rules[r] = [.. Rules[r].Where((_, a) => p[a] == 0)];
        }
        return productive[rule];
    }
}

/// <summary>A schema or grammar that cannot be compiled: the reason and the JSON path of the culprit.</summary>
public sealed class GrammarException(string message, string path) : Exception(message)
{
    public string Path { get; } = path;
}
