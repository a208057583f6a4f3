using System.Globalization;

namespace RecurrentGemma.Text.Grammar;

/// <summary>A non-negative decimal bound: its integer part and its fraction's digits (no trailing zeros).</summary>
internal readonly record struct DecimalBound(long Integer, string Fraction) : IComparable<DecimalBound>
{
    public int CompareTo(DecimalBound other)
    {
        int c = Integer.CompareTo(other.Integer);
        if (c != 0) return c;
        int n = Math.Max(Fraction.Length, other.Fraction.Length);
        return string.CompareOrdinal(Fraction.PadRight(n, '0'), other.Fraction.PadRight(n, '0'));
    }

    /// <summary>The magnitude of <paramref name="value"/> (its sign is the caller's), or null past what is written (15 + 15 digits).</summary>
    public static DecimalBound? Of(decimal value)
    {
        value = Math.Abs(value);
        if (value > JsonGrammar.Largest + 1) return null;
        var text = value.ToString(CultureInfo.InvariantCulture);
        int dot = text.IndexOf('.');
        string fraction = dot < 0 ? "" : text[(dot + 1)..].TrimEnd('0');
        if (fraction.Length > JsonGrammar.MaxFractionDigits) return null;
        return new DecimalBound(long.Parse(dot < 0 ? text : text[..dot], CultureInfo.InvariantCulture), fraction);
    }
}

/// <summary>
/// Numbers between decimal bounds (either open, each inclusive or not), written without an
/// exponent: the non-negative ones and, apart, the negative ones by their magnitude. For one
/// integer part the fraction's digits are compared with the bound's as a dictionary orders them
/// (a fraction is its digits padded with zeros), digit by digit: a larger digit at the first
/// difference, and the bound's own digits followed by anything (≥) or by something nonzero (>).
/// Written numbers are a subset of the valid ones: no exponent, no "-0", at most 15 digits on
/// either side of the point.
/// </summary>
/// <param name="g">The grammar the rules go into.</param>
/// <param name="json">Its JSON pieces.</param>
/// <param name="digits">Most fraction digits written (fewer for multipleOf 0.01: two).</param>
internal sealed class NumberRangeGrammar(ByteGrammar g, JsonGrammar json, int digits = JsonGrammar.MaxFractionDigits)
{
    int Digits => digits;

    /// <summary>Fraction digit strings: whether none at all (no point written) belongs, and a rule for the nonempty ones.</summary>
    readonly record struct Fractions(bool Empty, int? Some);

    // The same runs of digits recur in every bound's branches: one rule each, shared (a schema of
    // 30 bounded numbers: 7.7k rules before, against the schema's limit of 20k).
    readonly Dictionary<(int, int, bool), int> _runs = [];
    readonly Dictionary<int, int?> _nonZero = [];
    readonly Dictionary<(decimal?, bool, decimal?, bool), int?> _ranges = [];

    int Digit => json.Digit;
    int Lit(string digits) => g.Literal(digits);
    int DigitRange(char from, char to) => g.Terminal(ByteSet.Range((byte)from, (byte)to));
    int AnyDigits(int min, int max) => Run(min, max, zeros: false);
    int Zeros(int min, int max) => Run(min, max, zeros: true);

    int Run(int min, int max, bool zeros)
    {
        if (!_runs.TryGetValue((min, max, zeros), out int rule))
            _runs[(min, max, zeros)] = rule = g.Repeat(zeros ? g.Byte((byte)'0') : Digit, min, max);
        return rule;
    }

    /// <param name="lo">lower bound (signed), null: none.</param>
    /// <param name="hi">upper bound (signed), null: none.</param>
    /// <returns>The rule, or null when no number lies between.</returns>
    public int? Range(decimal? lo, bool loInclusive, decimal? hi, bool hiInclusive)
    {
        if (_ranges.TryGetValue((lo, loInclusive, hi, hiInclusive), out var known)) return known;
        return _ranges[(lo, loInclusive, hi, hiInclusive)] = Build(lo, loInclusive, hi, hiInclusive);
    }

    int? Build(decimal? lo, bool loInclusive, decimal? hi, bool hiInclusive)
    {
        var parts = new List<int>();
        if (hi is null || hi > 0 || (hi == 0 && hiInclusive))
        {
            bool fromLo = lo is >= 0;
            var c = fromLo ? DecimalBound.Of(lo!.Value) : new DecimalBound(0, "");
            var d = hi is { } h ? DecimalBound.Of(h) : null;
            if (c is { } start && Magnitude(start, fromLo ? loInclusive : true, hi is null ? null : d ?? Top, hi is null || hiInclusive) is { } positive)
                parts.Add(positive);
        }
        if (lo is null || lo < 0)
        {
            // v = −m: v ≤ hi is m ≥ −hi; with hi ≥ 0 every m > 0 (zero itself is written unsigned).
            bool toHi = hi is < 0;
            var c = toHi ? DecimalBound.Of(hi!.Value) : new DecimalBound(0, "");
            var d = lo is { } l ? DecimalBound.Of(l) : null;
            if (c is { } start && Magnitude(start, toHi && hiInclusive, lo is null ? null : d ?? Top, lo is null || loInclusive) is { } negative)
                parts.Add(g.Seq(g.Byte((byte)'-'), negative));
        }
        return parts.Count == 0 ? null : g.Choice([.. parts]);
    }

    /// <summary>Past every written number: an upper bound beyond 15 integer digits cuts nothing.</summary>
    static readonly DecimalBound Top = new(JsonGrammar.Largest + 1, "");

    /// <summary>Non-negative numbers m with c ≤ m (or c &lt; m) and m ≤ d (or &lt; d; null: no bound).</summary>
    int? Magnitude(DecimalBound c, bool cInclusive, DecimalBound? d, bool dInclusive)
    {
        if (c.Integer > JsonGrammar.Largest) return null;
        if (d is { } end)
        {
            int order = c.CompareTo(end);
            if (order > 0 || (order == 0 && !(cInclusive && dInclusive))) return null;
            if (end.Integer > JsonGrammar.Largest) { d = null; dInclusive = true; }   // beyond what is written: no bound
        }
        var parts = new List<int>();
        void Add(long integer, Fractions f)
        {
            if (Written(f) is { } fraction) parts.Add(g.Seq(Lit(integer.ToString(CultureInfo.InvariantCulture)), fraction));
        }
        if (d is { } top && top.Integer == c.Integer)
        {
            Add(c.Integer, Between(c.Fraction, cInclusive, top.Fraction, dInclusive, Digits));
            return parts.Count == 0 ? null : g.Choice([.. parts]);
        }
        Add(c.Integer, AtLeast(c.Fraction, cInclusive, Digits));
        long inner = d is { } upper ? upper.Integer - 1 : JsonGrammar.Largest;   // integer parts strictly between: any fraction
        if (c.Integer + 1 <= inner) parts.Add(g.Seq(json.NonNegativeRange(c.Integer + 1, inner), g.Optional(g.Seq(g.Byte((byte)'.'), AnyDigits(1, Digits)))));
        if (d is { } last) Add(last.Integer, AtMost(last.Fraction, dInclusive, Digits));
        return parts.Count == 0 ? null : g.Choice([.. parts]);
    }

    /// <summary>A fraction language as written after the integer part: nothing, or a point and digits.</summary>
    int? Written(Fractions f)
    {
        if (f.Some is { } some) return f.Empty ? g.Optional(g.Seq(g.Byte((byte)'.'), some)) : g.Seq(g.Byte((byte)'.'), some);
        return f.Empty ? g.Empty() : null;
    }

    /// <summary><paramref name="digit"/> then a string of <paramref name="tail"/>: nonempty strings only.</summary>
    int? Then(char digit, Fractions tail)
    {
        var alts = new List<int>();
        if (tail.Empty) alts.Add(g.Byte((byte)digit));
        if (tail.Some is { } some) alts.Add(g.Seq(g.Byte((byte)digit), some));
        return alts.Count == 0 ? null : g.Choice([.. alts]);
    }

    int? Choice(List<int?> alts)
    {
        var present = alts.Where(a => a is not null).Select(a => a!.Value).ToArray();
        return present.Length == 0 ? null : g.Choice(present);
    }

    /// <summary>1..m digits with at least one nonzero.</summary>
    int? NonZero(int m)
    {
        if (m < 1) return null;
        if (!_nonZero.TryGetValue(m, out var rule))
            _nonZero[m] = rule = g.Choice([.. Enumerable.Range(0, m).Select(j => g.Seq(Zeros(j, j), DigitRange('1', '9'), AnyDigits(0, m - j - 1)))]);
        return rule;
    }

    /// <summary>Fractions of at most m digits ≥ f (or > f).</summary>
    Fractions AtLeast(string f, bool inclusive, int m)
    {
        if (f.Length == 0) return inclusive ? new(true, m >= 1 ? AnyDigits(1, m) : null) : new(false, NonZero(m));
        var alts = new List<int?>();
        for (int i = 0; i < Math.Min(f.Length, m); i++)
            if (f[i] < '9') alts.Add(g.Seq(Lit(f[..i]), DigitRange((char)(f[i] + 1), '9'), AnyDigits(0, m - i - 1)));
        if (f.Length <= m) alts.Add(inclusive ? g.Seq(Lit(f), AnyDigits(0, m - f.Length)) : NonZero(m - f.Length) is { } nz ? g.Seq(Lit(f), nz) : null);
        return new(false, Choice(alts));
    }

    /// <summary>Fractions of at most m digits ≤ f (or &lt; f).</summary>
    Fractions AtMost(string f, bool inclusive, int m)
    {
        if (f.Length == 0) return inclusive ? new(true, m >= 1 ? Zeros(1, m) : null) : new(false, null);
        var alts = new List<int?>();
        for (int i = 0; i < Math.Min(f.Length, m); i++)
            if (f[i] > '0') alts.Add(g.Seq(Lit(f[..i]), DigitRange('0', (char)(f[i] - 1)), AnyDigits(0, m - i - 1)));
        for (int j = 1; j < Math.Min(f.Length, m + 1); j++) alts.Add(Lit(f[..j]));   // a shorter prefix is below f (its last digit is nonzero)
        if (inclusive && f.Length <= m) alts.Add(g.Seq(Lit(f), Zeros(0, m - f.Length)));
        return new(true, Choice(alts));
    }

    /// <summary>Fractions of at most m digits between lo and hi (lo ≤ hi as values), each end inclusive or not.</summary>
    Fractions Between(string lo, bool loInclusive, string hi, bool hiInclusive, int m)
    {
        if (hi.Length == 0)   // hi is zero: only zero-valued fractions, when both ends take them
            return lo.Length == 0 && loInclusive && hiInclusive ? new(true, m >= 1 ? Zeros(1, m) : null) : new(false, null);
        bool empty = lo.Length == 0 && loInclusive;   // no fraction is zero: inside when lo is zero and taken
        if (m == 0) return new(empty, null);
        char a = lo.Length > 0 ? lo[0] : '0', b = hi[0];
        string loRest = lo.Length > 0 ? lo[1..] : "", hiRest = hi[1..];
        if (a == b) return new(empty, Then(a, Between(loRest, loInclusive, hiRest, hiInclusive, m - 1)));
        var alts = new List<int?> { Then(a, AtLeast(loRest, loInclusive, m - 1)) };
        if (b - a >= 2) alts.Add(g.Seq(DigitRange((char)(a + 1), (char)(b - 1)), AnyDigits(0, m - 1)));
        alts.Add(Then(b, AtMost(hiRest, hiInclusive, m - 1)));
        return new(empty, Choice(alts));
    }
}
