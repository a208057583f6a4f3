namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// Integer multiples of k (JSON Schema's multipleOf), written as every integer is here: no
/// leading zeros, at most 15 digits. With k = k′·10^m (k′ not a multiple of 10) a nonzero multiple
/// is a nonzero multiple of k′ followed by m zeros, and the multiples of k′ are read digit by digit
/// by their remainder: after a prefix with remainder r, digit d leads to (10r + d) mod k′, and the
/// numeral may end where the remainder is 0. Bounds: a side with few multiples lists them; a side
/// open to the 15-digit limit takes the automaton, from the first multiple on. Anything else —
/// k′ above <see cref="MaxReduced"/>, or a far bound with too many multiples before it — is null:
/// not supported (strict mode refuses it, otherwise multipleOf is ignored).
/// </summary>
internal sealed class MultipleOfGrammar(ByteGrammar g)
{
    /// <summary>Largest k′: the automaton has k′ × 15 rules of up to 11 alternatives.</summary>
    public const long MaxReduced = 64;
    /// <summary>Most multiples listed on a bounded side (as a trie of their digits: one rule per prefix).</summary>
    public const long MaxListed = 4096;
    const long Largest = 999_999_999_999_999;   // 15 digits, as JsonGrammar writes integers

    public static bool Supported(long k)
    {
        while (k % 10 == 0) k /= 10;
        return k <= MaxReduced;
    }

    /// <summary>The multiples of k in [lo, hi] (null: open); null when not supported.</summary>
    public int? Multiples(long k, long? lo, long? hi)
    {
        long a = Math.Max(lo ?? -Largest, -Largest), b = Math.Min(hi ?? Largest, Largest);
        long first = CeilDiv(a, k), last = FloorDiv(b, k);   // the multiples are j·k for j in [first, last]
        if (first > last) throw new GrammarException($"no multiple of {k} lies within the bounds", "");
        if (last - first < MaxListed) return Listed(k, first, last);
        var parts = new List<int>();
        if (last >= 0)
        {
            long from = Math.Max(first, 0);
            if (last - from < MaxListed) parts.Add(Listed(k, from, last));
            else if (last < Largest / k || AtLeast(k, from) is not { } open) return null;   // bounded far: too many to list
            else parts.Add(open);
        }
        if (first < 0)
        {
            long near = Math.Min(last, -1);   // the negative multiples j·k for j in [first, near]
            if (near - first < MaxListed) parts.Add(Listed(k, first, near));
            else if (first > -(Largest / k) || AtLeast(k, -near) is not { } open) return null;
            else parts.Add(g.Seq(g.Byte((byte)'-'), open));
        }
        return g.Choice([.. parts]);
    }

    /// <summary>The multiples j·k for every j ≥ <paramref name="from"/> ≥ 0 up to the 15-digit limit:
    /// those with as many digits as from·k, listed, then every longer one by the automaton.</summary>
    int? AtLeast(long k, long from)
    {
        if (from == 0) return Positive(k, 1) is { } all ? g.Choice(g.Byte((byte)'0'), all) : null;
        long start = from * k;
        int length = start.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
        if (from == 1 || start == Pow10(length - 1)) return Positive(k, length);   // nothing shorter is ≥ start: all of that length and longer
        long end = FloorDiv(Pow10(length) - 1, k);   // the last multiple of the same length
        if (end - from >= MaxListed) return null;
        var parts = new List<int> { Listed(k, from, end) };
        if (length < 15 && Positive(k, length + 1) is { } longer) parts.Add(longer);
        else if (length < 15) return null;
        return g.Choice([.. parts]);
    }

    static long Pow10(int n) { long p = 1; for (int i = 0; i < n; i++) p *= 10; return p; }

    /// <summary>The numerals of j·k for j in [from, to], as a trie (<see cref="NumeralTrie"/>).</summary>
    int Listed(long k, long from, long to)
    {
        var numerals = new List<string>();
        for (long j = from; j <= to; j++) numerals.Add((j * k).ToString(System.Globalization.CultureInfo.InvariantCulture));
        return NumeralTrie.Of(g, numerals);
    }

    /// <summary>The positive multiples of k of <paramref name="minDigits"/> to 15 digits (null when k′ is too large).</summary>
    int? Positive(long k, int minDigits)
    {
        int zeros = 0;
        long reduced = k;
        while (reduced % 10 == 0) { reduced /= 10; zeros++; }
        if (reduced > MaxReduced || zeros >= 15) return null;
        int digits = 15 - zeros;   // what the multiple of k′ may use
        int least = Math.Max(1, minDigits - zeros);   // and at least this many
        if (least > digits) return null;
        // With `left` more digits allowed, digits - left are written: the numeral may end on remainder 0
        // once at least `least` are. canEnd[l, r]: from there some continuation ends.
        bool MayEnd(int left, long r) => r == 0 && digits - left >= least;
        var canEnd = new bool[digits + 1, reduced];
        for (int l = 0; l <= digits; l++)
            for (long r = 0; r < reduced; r++)
                canEnd[l, r] = MayEnd(l, r) || (l > 0 && Enumerable.Range(0, 10).Any(d => canEnd[l - 1, (10 * r + d) % reduced]));
        var rules = new Dictionary<(int, long), int>();
        int Rest(int left, long r)
        {
            if (rules.TryGetValue((left, r), out int known)) return known;
            var alternatives = new List<int[]>();
            if (MayEnd(left, r)) alternatives.Add([]);
            if (left > 0)
                for (int d = 0; d <= 9; d++)
                {
                    long next = (10 * r + d) % reduced;
                    if (canEnd[left - 1, next]) alternatives.Add([g.Byte((byte)('0' + d)), Rest(left - 1, next)]);
                }
            return rules[(left, r)] = g.Rule([.. alternatives]);
        }
        var starts = new List<int>();
        for (int d = 1; d <= 9; d++)
            if (canEnd[digits - 1, d % reduced]) starts.Add(g.Seq(g.Byte((byte)('0' + d)), Rest(digits - 1, d % reduced)));
        int body = g.Choice([.. starts]);
        return zeros == 0 ? body : g.Seq(body, g.Literal(new string('0', zeros)));
    }

    static long FloorDiv(long x, long k) => x >= 0 ? x / k : -((-x + k - 1) / k);
    static long CeilDiv(long x, long k) => x >= 0 ? (x + k - 1) / k : -(-x / k);
}
