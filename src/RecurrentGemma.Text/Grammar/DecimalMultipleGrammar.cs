using System.Globalization;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// Numbers that are multiples of a decimal step m = p·10^−d with d ≥ 1 as small as it can be and
/// p ≤ <see cref="MaxReduced"/> (0.5, 0.25, 2.5, 0.05, 0.125, 0.75, 6.4, …; 0.1, 0.01, …
/// have a simpler rule: a count of fraction digits). A written number with at most d fraction
/// digits is N·10^−d for the integer N its digits spell (fraction padded with zeros to d), and it
/// is a multiple of m exactly when N is a multiple of p. So the numeral is read digit by digit by
/// the remainder of the digits so far (r → (10r + digit) mod p), integer part and fraction alike,
/// and may end after j fraction digits where r·10^(d−j) ≡ 0 (mod p); states from which no ending
/// is reachable get no rule. Bounds: a side with few multiples lists them (as a trie of their
/// shortest numerals); a side open to the 15-digit limit takes the automaton, from the first
/// multiple on (those short of the next power of ten listed, then every longer integer part).
/// Anything else — a far bound with too many multiples before it — is null: not supported
/// (strict mode refuses it, otherwise multipleOf is ignored), as for integers.
/// </summary>
internal sealed class DecimalMultipleGrammar(ByteGrammar g)
{
    /// <summary>Largest p: the automaton has p × (15 + d) rules of up to 11 alternatives (eighths, 0.125, need 125).</summary>
    public const long MaxReduced = 128;
    const int IntegerDigits = 15;
    /// <summary>Most fraction digits of a step (its multiples' index j·m then fits a decimal up to the 15-digit limit).</summary>
    const int MaxStepDigits = 12;

    readonly Dictionary<(long, int, int), int?> _positive = [];
    readonly Dictionary<(long, int, bool), int?> _belowOne = [];

    /// <summary>(p, d) for a step that is not whole and not 10^−d, or null when this grammar does not take it.</summary>
    public static (long P, int D)? Step(decimal m)
    {
        if (m <= 0 || decimal.Truncate(m) == m) return null;
        decimal scaled = m;
        for (int d = 1; d <= MaxStepDigits; d++)
        {
            scaled *= 10;
            if (decimal.Truncate(scaled) != scaled) continue;
            return scaled is > 1 and <= MaxReduced ? ((long)scaled, d) : null;
        }
        return null;
    }

    /// <summary>The multiples of m (= p·10^−d) between the bounds (null: open), or null when not supported.</summary>
    public int? Multiples(decimal m, long p, int d, decimal? lo, bool loInclusive, decimal? hi, bool hiInclusive)
    {
        decimal limit = decimal.Floor((JsonGrammar.Largest + 1 - Pow10Decimal(-d)) / m);   // the largest index written
        decimal? first = lo is { } a ? Math.Max(Index(a / m, up: true, loInclusive), -limit) : null;
        decimal? last = hi is { } b ? Math.Min(Index(b / m, up: false, hiInclusive), limit) : null;
        if (first > last) throw new GrammarException($"no multiple of {Show(m)} lies within the bounds", "");
        if (first is { } f0 && last is { } l0 && l0 - f0 < MultipleOfGrammar.MaxListed) return Listed(m, f0, l0);
        var parts = new List<int>();
        if (last is null || last >= 0)
        {
            decimal from = Math.Max(first ?? 0, 0);
            if (last is { } l)
            {
                if (l - from >= MultipleOfGrammar.MaxListed) return null;   // bounded far: too many to list
                parts.Add(Listed(m, from, l));
            }
            else if (AtLeast(m, p, d, from) is { } open) parts.Add(open);
            else return null;
        }
        if (first is null || first < 0)
        {
            decimal near = Math.Min(last ?? -1, -1);   // the negative multiples j·m for j in [first, near]
            if (first is { } f)
            {
                if (near - f >= MultipleOfGrammar.MaxListed) return null;
                parts.Add(Listed(m, f, near));
            }
            else if (AtLeast(m, p, d, -near) is { } open) parts.Add(g.Seq(g.Byte((byte)'-'), open));
            else return null;
        }
        return g.Choice([.. parts]);
    }

    /// <summary>The first (up) or last index j with j·m within a bound at <paramref name="q"/> = bound ÷ m.</summary>
    static decimal Index(decimal q, bool up, bool inclusive)
    {
        decimal j = up ? decimal.Ceiling(q) : decimal.Floor(q);
        if (!inclusive && j == q) j += up ? 1 : -1;
        return j;
    }

    /// <summary>Magnitudes j·m for every j ≥ <paramref name="from"/> ≥ 0 up to the 15-digit limit.</summary>
    int? AtLeast(decimal m, long p, int d, decimal from)
    {
        if (from == 0) return Both(BelowOne(p, d, zero: true), Positive(p, d, 1));
        decimal start = from * m;
        if (start < 1)
        {
            // Everything in [start, 1): all of it when start is the first nonzero multiple, else listed.
            if (from == 1) return Both(BelowOne(p, d, zero: false), Positive(p, d, 1));
            decimal below = decimal.Ceiling(1 / m) - 1;   // the last multiple under 1
            if (below - from >= MultipleOfGrammar.MaxListed) return null;
            return Both(Listed(m, from, below), Positive(p, d, 1));
        }
        int length = decimal.Floor(start).ToString(CultureInfo.InvariantCulture).Length;   // integer digits of the first multiple
        if ((from - 1) * m < Pow10Decimal(length - 1)) return Positive(p, d, length);   // nothing shorter is ≥ start
        decimal end = decimal.Ceiling(Pow10Decimal(length) / m) - 1;   // the last multiple with that many integer digits
        if (end - from >= MultipleOfGrammar.MaxListed) return null;
        int listed = Listed(m, from, end);
        return length < IntegerDigits ? Both(listed, Positive(p, d, length + 1)) : listed;
    }

    int? Both(int? a, int? b) => a is { } x && b is { } y ? g.Choice(x, y) : null;

    /// <summary>The numerals of j·m for j in [from, to], shortest form (no trailing fraction zeros), as a trie.</summary>
    int Listed(decimal m, decimal from, decimal to)
    {
        var numerals = new List<string>();
        for (decimal j = from; j <= to; j++) numerals.Add(Show(j * m));
        return NumeralTrie.Of(g, numerals);
    }

    static string Show(decimal x) => x == 0 ? "0" : x.ToString("0.############", CultureInfo.InvariantCulture);

    static decimal Pow10Decimal(int n)
    {
        decimal v = 1;
        for (int i = 0; i < Math.Abs(n); i++) v = n > 0 ? v * 10 : v / 10;
        return v;
    }

    /// <summary>
    /// Positive multiples with an integer part of <paramref name="minDigits"/> to 15 digits (no
    /// leading zero), then optionally a point and 1 to d fraction digits.
    /// </summary>
    int? Positive(long p, int d, int minDigits)
    {
        if (_positive.TryGetValue((p, d, minDigits), out var known)) return known;
        if (minDigits > IntegerDigits) return _positive[(p, d, minDigits)] = null;
        var tail = Lacking(p, d);
        bool Ends(int j, long r) => r * tail[j] % p == 0;

        var fraction = new Dictionary<(int, long), int?>();
        int? Fraction(int j, long r)   // j ≥ 1 fraction digits read, remainder r
        {
            if (fraction.TryGetValue((j, r), out var rule)) return rule;
            var alternatives = new List<int[]>();
            if (Ends(j, r)) alternatives.Add([]);
            if (j < d) AddDigits(alternatives, 0, r, p, next => Fraction(j + 1, next));
            return fraction[(j, r)] = alternatives.Count == 0 ? null : g.Rule([.. alternatives]);
        }
        var integer = new Dictionary<(int, long), int?>();
        int? Integer(int n, long r)   // n ≥ 1 integer digits read
        {
            if (integer.TryGetValue((n, r), out var rule)) return rule;
            var alternatives = new List<int[]>();
            if (n >= minDigits)
            {
                if (Ends(0, r)) alternatives.Add([]);
                if (Point(r, p, (_, next) => Fraction(1, next)) is { } point) alternatives.Add(point);
            }
            if (n < IntegerDigits) AddDigits(alternatives, 0, r, p, next => Integer(n + 1, next));
            return integer[(n, r)] = alternatives.Count == 0 ? null : g.Rule([.. alternatives]);
        }
        var starts = new List<int[]>();
        AddDigits(starts, 1, 0, p, next => Integer(1, next));
        return _positive[(p, d, minDigits)] = starts.Count == 0 ? null : g.Rule([.. starts]);
    }

    /// <summary>"0", or "0." and 1 to d fraction digits: the multiples in [0, 1) (without zero itself unless <paramref name="zero"/>).</summary>
    int? BelowOne(long p, int d, bool zero)
    {
        if (_belowOne.TryGetValue((p, d, zero), out var known)) return known;
        var tail = Lacking(p, d);
        var fraction = new Dictionary<(int, long, bool), int?>();
        int? Fraction(int j, long r, bool nonzero)
        {
            if (fraction.TryGetValue((j, r, nonzero), out var rule)) return rule;
            var alternatives = new List<int[]>();
            if ((nonzero || zero) && r * tail[j] % p == 0) alternatives.Add([]);
            if (j < d)
                for (int digit = 0; digit <= 9; digit++)
                    if (Fraction(j + 1, (10 * r + digit) % p, nonzero || digit != 0) is { } next) alternatives.Add([g.Byte((byte)('0' + digit)), next]);   // the digit decides nonzero: not AddDigits
            return fraction[(j, r, nonzero)] = alternatives.Count == 0 ? null : g.Rule([.. alternatives]);
        }
        var after = new List<int[]>();
        if (zero) after.Add([]);
        if (Point(0, p, (digit, next) => Fraction(1, next, digit != 0)) is { } point) after.Add(point);
        return _belowOne[(p, d, zero)] = after.Count == 0 ? null : g.Seq(g.Byte((byte)'0'), g.Rule([.. after]));
    }

    /// <summary>10^(d−j) mod p for j = 0…d: what a numeral with j fraction digits still lacks of the step's d
    /// (it is a multiple when its remainder times this is 0 mod p).</summary>
    static long[] Lacking(long p, int d)
    {
        var tail = new long[d + 1];
        for (int j = d; j >= 0; j--) tail[j] = j == d ? 1 % p : tail[j + 1] * 10 % p;
        return tail;
    }

    /// <summary>"." and a first fraction digit read from remainder r (null when no digit can lead to an end).</summary>
    /// <param name="first">the rule after that digit, given the digit and the new remainder (null: none).</param>
    int[]? Point(long r, long p, Func<int, long, int?> first)
    {
        var digits = new List<int[]>();
        for (int digit = 0; digit <= 9; digit++)
            if (first(digit, (10 * r + digit) % p) is { } rule) digits.Add([g.Byte((byte)('0' + digit)), rule]);
        return digits.Count == 0 ? null : [g.Byte((byte)'.'), g.Rule([.. digits])];
    }

    /// <summary>Adds "digit, next rule" for each digit from <paramref name="lowest"/> to 9 whose next state can still end.</summary>
    void AddDigits(List<int[]> alternatives, int lowest, long r, long p, Func<long, int?> next)
    {
        for (int digit = lowest; digit <= 9; digit++)
            if (next((10 * r + digit) % p) is { } rule) alternatives.Add([g.Byte((byte)('0' + digit)), rule]);
    }
}
