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
        return s;
    }

    /// <summary>Between <paramref name="min"/> and <paramref name="max"/> (null: no bound) repetitions,
    /// each optionally preceded by <paramref name="separator"/> after the first.</summary>
    public int Repeat(int symbol, int min, int? max, int? separator = null)
    {
        if (max is { } m && m < min) throw new GrammarException($"a maximum count ({m}) below the minimum ({min})", "");
        // After the first item each further item is [separator] item.
        int next = separator is { } sep ? Seq(sep, symbol) : symbol;
        int tail;   // what may follow once `min` items are in
        if (max is null) tail = Star(next);
        else
        {
            int extra = max.Value - Math.Max(min, 1);
            tail = Empty();
            for (int i = 0; i < extra; i++) tail = Rule([next, tail], []);
        }
        if (min == 0) return max == 0 ? Empty() : Optional(Seq(symbol, tail));
        var parts = new List<int> { symbol };
        for (int i = 1; i < min; i++) parts.Add(next);
        parts.Add(tail);
        return Seq([.. parts]);
    }

    internal ByteSet TerminalSet(int symbol) => Terminals[~symbol];
}

/// <summary>A schema or grammar that cannot be compiled: the reason and the JSON path of the culprit.</summary>
public sealed class GrammarException(string message, string path) : Exception(message)
{
    public string Path { get; } = path;
}
