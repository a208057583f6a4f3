namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// The pieces of JSON as grammar rules: strings (valid UTF-8 only, escapes that decode to
/// valid text), numbers with bounded digit counts, integers in a range, the formats, and any JSON
/// value. Output is compact: no whitespace between tokens, so a model cannot loop on spaces.
/// </summary>
internal sealed class JsonGrammar(ByteGrammar g)
{
    /// <summary>Digits allowed in a number's integer part, fraction and exponent (bounded so that
    /// a constrained number always ends).</summary>
    public const int MaxIntegerDigits = 15, MaxFractionDigits = 15, MaxExponentDigits = 3;

    int? _char, _string, _number, _integer, _value, _digit, _digit19, _hex;

    public ByteGrammar G => g;

    public int Digit => _digit ??= g.Terminal(ByteSet.Range((byte)'0', (byte)'9'));
    int Digit19 => _digit19 ??= g.Terminal(ByteSet.Range((byte)'1', (byte)'9'));
    int Hex => _hex ??= g.Terminal(ByteSet.Range("0123456789abcdef"u8.ToArray(), []));

    /// <summary>One character of a JSON string body: a valid UTF-8 character other than '"', '\'
    /// and controls, or an escape (\uXXXX limited to non-surrogates, so it always decodes).</summary>
    public int Char => _char ??= BuildChar();

    int BuildChar()
    {
        var ascii = ByteSet.Range([], [(0x20, 0x7F)]).Except(ByteSet.Of((byte)'"', (byte)'\\'));
        int nonSurrogateHex4 = g.Rule(
            [g.Terminal(ByteSet.Range("0123456789abcABC"u8.ToArray(), [])), Hex, Hex, Hex],
            [g.Terminal(ByteSet.Of((byte)'d', (byte)'D')), g.Terminal(ByteSet.Range("01234567"u8.ToArray(), [])), Hex, Hex],
            [g.Terminal(ByteSet.Of((byte)'e', (byte)'f', (byte)'E', (byte)'F')), Hex, Hex, Hex]);
        int escape = g.Rule(
            [g.Byte((byte)'\\'), g.Terminal(ByteSet.Of((byte)'"', (byte)'\\', (byte)'/', (byte)'b', (byte)'f', (byte)'n', (byte)'r', (byte)'t'))],
            [g.Byte((byte)'\\'), g.Byte((byte)'u'), nonSurrogateHex4]);
        int rule = Utf8Char(g, ascii, [escape]);
        g.PlainCharRules.Add(rule);   // every plain character is one of its alternatives, as itself
        return rule;
    }

    public int Quote => g.Byte((byte)'"');

    int? _plainChar;

    /// <summary>One character written as itself in a JSON string (no escape, no control, not '"'
    /// or '\'): what a pattern's characters are made of, so each means exactly itself.</summary>
    public int PlainChar() => _plainChar ??= PlainCharExcept(ByteSet.Of());

    /// <summary><see cref="PlainChar"/> except some ASCII characters.</summary>
    public int PlainCharExcept(ByteSet excludedAscii)
    {
        var ascii = ByteSet.Range([], [(0x20, 0x7F)]).Except(ByteSet.Of((byte)'"', (byte)'\\')).Except(excludedAscii);
        return Utf8Char(g, ascii);
    }

    /// <summary>
    /// One character: a byte of <paramref name="ascii"/>, or a well-formed multi-byte UTF-8
    /// sequence (no overlong forms, no surrogates, nothing above U+10FFFF), or one of the
    /// <paramref name="extra"/> alternatives. Every text rule is built on this one.
    /// </summary>
    internal static int Utf8Char(ByteGrammar g, ByteSet ascii, params int[][] extra)
    {
        int cont = g.Terminal(ByteSet.Range(0x80, 0xBF));
        int T(byte from, byte to) => g.Terminal(ByteSet.Range(from, to));
        List<int[]> alternatives =
        [
            [T(0xC2, 0xDF), cont], [g.Byte(0xE0), T(0xA0, 0xBF), cont], [T(0xE1, 0xEC), cont, cont], [g.Byte(0xED), T(0x80, 0x9F), cont],
            [T(0xEE, 0xEF), cont, cont], [g.Byte(0xF0), T(0x90, 0xBF), cont, cont], [T(0xF1, 0xF3), cont, cont, cont], [g.Byte(0xF4), T(0x80, 0x8F), cont, cont],
        ];
        if (!ascii.IsEmpty) alternatives.Insert(0, [g.Terminal(ascii)]);
        alternatives.AddRange(extra);
        return g.Rule([.. alternatives]);
    }

    /// <summary>A JSON string of <paramref name="min"/>..<paramref name="max"/> characters.</summary>
    public int String(int min = 0, int? max = null) =>
        min == 0 && max is null ? _string ??= g.Seq(Quote, g.Star(Char), Quote) : g.Seq(Quote, g.Repeat(Char, min, max), Quote);

    /// <summary>-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,15})?([eE][+-]?[0-9]{1,3})?</summary>
    public int Number => _number ??= g.Seq(
        g.Optional(g.Byte((byte)'-')), IntegerPart(),
        g.Optional(g.Seq(g.Byte((byte)'.'), g.Repeat(Digit, 1, MaxFractionDigits))),
        g.Optional(g.Seq(g.Terminal(ByteSet.Of((byte)'e', (byte)'E')), g.Optional(g.Terminal(ByteSet.Of((byte)'+', (byte)'-'))), g.Repeat(Digit, 1, MaxExponentDigits))));

    int IntegerPart() => g.Choice(g.Byte((byte)'0'), g.Seq(Digit19, g.Repeat(Digit, 0, MaxIntegerDigits - 1)));

    /// <summary>-?(0|[1-9][0-9]{0,14})</summary>
    public int Integer => _integer ??= g.Seq(g.Optional(g.Byte((byte)'-')), IntegerPart());

    internal static readonly long Largest = (long)Math.Pow(10, MaxIntegerDigits) - 1;

    /// <summary>Exactly the integers in [lo, hi] (either bound may be open), written without
    /// leading zeros; open bounds stop at 15 digits.</summary>
    public int IntegerRange(long? lo, long? hi)
    {
        long a = Math.Max(lo ?? -Largest, -Largest), b = Math.Min(hi ?? Largest, Largest);
        if (a > b)
            throw new GrammarException(lo is null || hi is null
                ? $"no integer of at most {MaxIntegerDigits} digits (the most written) is {(lo is null ? $"at most {hi}" : $"at least {lo}")}"
                : $"no integer lies between the minimum {lo} and the maximum {hi}", "");
        var parts = new List<int>();
        if (a < 0) parts.Add(g.Seq(g.Byte((byte)'-'), NonNegativeRange(Math.Max(1, -Math.Min(b, -1)), -a)));
        if (b >= 0) parts.Add(NonNegativeRange(Math.Max(a, 0), b));
        return g.Choice([.. parts]);
    }

    /// <summary>Decimal numerals of [lo, hi], 0 ≤ lo ≤ hi, split by digit count.</summary>
    internal int NonNegativeRange(long lo, long hi)
    {
        var parts = new List<int>();
        for (int len = lo.ToString().Length; len <= hi.ToString().Length; len++)
        {
            long first = len == 1 ? 0 : (long)Math.Pow(10, len - 1), last = (long)Math.Pow(10, len) - 1;
            long from = Math.Max(lo, first), to = Math.Min(hi, last);
            if (from <= to) parts.Add(SameLength(from.ToString(), to.ToString()));
        }
        return g.Choice([.. parts]);
    }

    /// <summary>Numerals of equal length between a and b (a ≤ b), digit by digit.</summary>
    int SameLength(string a, string b)
    {
        if (a.Length == 0) return g.Empty();
        int rest = a.Length - 1;
        if (a[0] == b[0]) return g.Seq(g.Byte((byte)a[0]), SameLength(a[1..], b[1..]));
        if (a[1..].All(c => c == '0') && b[1..].All(c => c == '9'))
            return g.Seq(g.Terminal(ByteSet.Range((byte)a[0], (byte)b[0])), g.Repeat(Digit, rest, rest));
        var parts = new List<int>
        {
            g.Seq(g.Byte((byte)a[0]), SameLength(a[1..], new string('9', rest))),
        };
        if (b[0] - a[0] > 1)
            parts.Add(g.Seq(g.Terminal(ByteSet.Range((byte)(a[0] + 1), (byte)(b[0] - 1))), g.Repeat(Digit, rest, rest)));
        parts.Add(g.Seq(g.Byte((byte)b[0]), SameLength(new string('0', rest), b[1..])));
        return g.Choice([.. parts]);
    }

    /// <summary>Any JSON value (objects with any keys, arrays, strings, numbers, literals).</summary>
    public int Value => _value ??= BuildValue();

    int BuildValue()
    {
        int value = g.Declare();
        int comma = g.Byte((byte)',');
        int member = g.Seq(String(), g.Byte((byte)':'), value);
        int obj = g.Seq(g.Byte((byte)'{'), g.Repeat(member, 0, null, comma), g.Byte((byte)'}'));
        int arr = g.Seq(g.Byte((byte)'['), g.Repeat(value, 0, null, comma), g.Byte((byte)']'));
        g.Define(value, [obj], [arr], [String()], [Number], [g.Literal("true")], [g.Literal("false")], [g.Literal("null")]);
        return value;
    }

    /// <summary>Any JSON object.</summary>
    public int AnyObject()
    {
        int comma = g.Byte((byte)',');
        int member = g.Seq(String(), g.Byte((byte)':'), Value);
        return g.Seq(g.Byte((byte)'{'), g.Repeat(member, 0, null, comma), g.Byte((byte)'}'));
    }

    // Formats: only values every validator accepts (e.g. day 29–31 only in months that have it).
    int Digits(int n) => g.Repeat(Digit, n, n);
    int Two(long lo, long hi) => g.Choice(Enumerable.Range((int)lo, (int)(hi - lo + 1)).Select(i => g.Literal(i.ToString("00"))).ToArray());

    public int Date()
    {
        int year = g.Seq(g.Terminal(ByteSet.Range((byte)'1', (byte)'2')), Digits(3));
        int dash = g.Byte((byte)'-');
        int monthDay = g.Choice(
            g.Seq(g.Choice(new[] { "01", "03", "05", "07", "08", "10", "12" }.Select(g.Literal).ToArray()), dash, Two(1, 31)),
            g.Seq(g.Choice(new[] { "04", "06", "09", "11" }.Select(g.Literal).ToArray()), dash, Two(1, 30)),
            g.Seq(g.Literal("02"), dash, Two(1, 28)));
        return g.Seq(year, dash, monthDay);
    }

    public int Time()
    {
        int colon = g.Byte((byte)':');
        int fraction = g.Optional(g.Seq(g.Byte((byte)'.'), g.Repeat(Digit, 1, 6)));
        int offset = g.Choice(g.Byte((byte)'Z'), g.Seq(g.Terminal(ByteSet.Of((byte)'+', (byte)'-')), Two(0, 23), colon, Two(0, 59)));
        return g.Seq(Two(0, 23), colon, Two(0, 59), colon, Two(0, 59), fraction, offset);
    }

    public int DateTime() => g.Seq(Date(), g.Byte((byte)'T'), Time());

    public int Uuid()
    {
        int dash = g.Byte((byte)'-');
        return g.Seq(g.Repeat(Hex, 8, 8), dash, g.Repeat(Hex, 4, 4), dash, g.Repeat(Hex, 4, 4), dash, g.Repeat(Hex, 4, 4), dash, g.Repeat(Hex, 12, 12));
    }

    /// <summary>Dotted-quad IPv4 (0–255 each, no leading zeros).</summary>
    public int Ipv4()
    {
        int octet = NonNegativeRange(0, 255), dot = g.Byte((byte)'.');
        return g.Seq(octet, dot, octet, dot, octet, dot, octet);
    }

    /// <summary>A host name of one to four lowercase labels (RFC 1123 letters, digits and inner hyphens).</summary>
    public int Hostname() => Host(tld: false);

    int Host(bool tld)
    {
        int alnum = g.Terminal(ByteSet.Range([], [((byte)'a', (byte)'z'), ((byte)'0', (byte)'9')]));
        int inner = g.Terminal(ByteSet.Range("-"u8.ToArray(), [((byte)'a', (byte)'z'), ((byte)'0', (byte)'9')]));
        int label = g.Seq(alnum, g.Optional(g.Seq(g.Repeat(inner, 0, 18), alnum)));   // 1–20 characters, no hyphen at either end
        int dot = g.Byte((byte)'.');
        if (!tld) return g.Seq(label, g.Repeat(g.Seq(dot, label), 0, 3));
        return g.Seq(label, g.Repeat(g.Seq(dot, label), 0, 2), dot, g.Repeat(g.Terminal(ByteSet.Range((byte)'a', (byte)'z')), 2, 6));
    }

    /// <summary>
    /// An absolute http(s) URI: host with a top-level domain, an optional port, up to five path
    /// segments of unreserved characters and an optional query of key=value pairs. A conservative
    /// subset of RFC 3986 URIs, of bounded length (so maxLength limits like Pydantic's 2083 hold).
    /// </summary>
    public int Uri()
    {
        var unreserved = ByteSet.Range("-._~"u8.ToArray(), [((byte)'a', (byte)'z'), ((byte)'A', (byte)'Z'), ((byte)'0', (byte)'9')]);
        int segment = g.Repeat(g.Terminal(unreserved), 1, 20);
        int port = g.Seq(g.Byte((byte)':'), NonNegativeRange(1, 65535));
        int path = g.Repeat(g.Seq(g.Byte((byte)'/'), segment), 0, 5);
        int pair = g.Seq(segment, g.Byte((byte)'='), segment);
        int query = g.Seq(g.Byte((byte)'?'), pair, g.Repeat(g.Seq(g.Byte((byte)'&'), pair), 0, 3));
        return g.Seq(g.Literal("http"), g.Optional(g.Byte((byte)'s')), g.Literal("://"), Host(tld: true), g.Optional(port), path, g.Optional(query));
    }

    public int Email()
    {
        int alnum = g.Terminal(ByteSet.Range([], [((byte)'a', (byte)'z'), ((byte)'0', (byte)'9')]));
        int word = g.Repeat(alnum, 1, 20);
        int dot = g.Byte((byte)'.');
        int local = g.Seq(word, g.Optional(g.Seq(dot, word)));
        int domain = g.Seq(word, g.Optional(g.Seq(dot, word)), dot, g.Repeat(g.Terminal(ByteSet.Range((byte)'a', (byte)'z')), 2, 6));
        return g.Seq(local, g.Byte((byte)'@'), domain);
    }
}
