using System.Text;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// A JSON Schema <c>pattern</c> as grammar rules for a JSON string's body. The regex subset:
/// literals; <c>.</c>; classes <c>[a-z0-9_]</c> and <c>[^…]</c> over ASCII (a class may also list
/// single non-ASCII characters, a negated one may not); <c>\d \w \s \D \W \S</c> and escaped
/// punctuation; groups <c>(…)</c> and <c>(?:…)</c> with <c>|</c>; quantifiers <c>* + ? {n} {n,}
/// {n,m}</c> (a lazy <c>?</c> after them is accepted and changes nothing); <c>^</c> and <c>$</c>
/// only at the start and end. As in JSON Schema the pattern is unanchored unless it says
/// otherwise: without <c>^</c> any text may come before the match, without <c>$</c> after it.
/// Generated characters are never escaped in the JSON (so they mean exactly themselves), which
/// is why <c>\s</c> stands for a space only and <c>.</c> for any character but a control.
/// Backreferences, lookaround and the like are refused (<see cref="GrammarException"/>).
/// The same subset also compiles to raw text (<see cref="CompileRaw"/>, vLLM's regex outputs):
/// then the whole output matches, characters are themselves (a quote is a quote), and <c>.</c>
/// and negated classes stand for any character but a control.
/// </summary>
internal sealed class PatternGrammar
{
    readonly ByteGrammar _g;
    readonly JsonGrammar _json;
    readonly string _p;
    readonly int _maxRepeat;
    readonly bool _raw;
    int _i;

    PatternGrammar(ByteGrammar g, JsonGrammar json, string pattern, int maxRepeat, bool raw = false)
    {
        _g = g; _json = json; _p = pattern; _maxRepeat = maxRepeat; _raw = raw;
    }

    /// <summary>Raw text that the whole pattern matches (anchored at both ends, whether it says so or not).</summary>
    public static int CompileRaw(ByteGrammar g, string pattern, int maxRepeat) =>
        new PatternGrammar(g, new JsonGrammar(g), pattern, maxRepeat, raw: true).Whole(out _, out _);

    /// <summary>Any character but a control (raw), or a JSON string's plain character, except some ASCII.</summary>
    int AnyCharExcept(ByteSet excludedAscii) => _raw
        ? JsonGrammar.Utf8Char(_g, ByteSet.Range(0x20, 0x7E).Except(excludedAscii))
        : _json.PlainCharExcept(excludedAscii);

    /// <summary>The rule for a string body (without the quotes) matching the pattern.</summary>
    public static int Compile(ByteGrammar g, JsonGrammar json, string pattern, int maxRepeat)
    {
        int body = new PatternGrammar(g, json, pattern, maxRepeat).Whole(out bool anchoredStart, out bool anchoredEnd);
        var parts = new List<int>();
        if (!anchoredStart) parts.Add(g.Star(json.PlainChar()));
        parts.Add(body);
        if (!anchoredEnd) parts.Add(g.Star(json.PlainChar()));
        return g.Seq([.. parts]);
    }

    /// <summary>The whole pattern between its optional anchors, and which anchors it had.</summary>
    int Whole(out bool anchoredStart, out bool anchoredEnd)
    {
        anchoredStart = _p.StartsWith('^');
        if (anchoredStart) _i = 1;
        int body = Alternation();
        anchoredEnd = _i < _p.Length && _p[_i] == '$' && _i == _p.Length - 1;
        if (anchoredEnd) _i++;
        if (_i != _p.Length) throw Error($"unexpected '{_p[_i]}'");
        return body;
    }

    GrammarException Error(string what) => new($"pattern /{_p}/: {what} (at {_i}; see the README for the supported regex subset)", "pattern");

    bool More => _i < _p.Length;
    char Peek => _p[_i];

    int Alternation()
    {
        var options = new List<int> { Sequence() };
        while (More && Peek == '|') { _i++; options.Add(Sequence()); }
        return options.Count == 1 ? options[0] : _g.Choice([.. options]);
    }

    int Sequence()
    {
        var items = new List<int>();
        while (More && Peek != '|' && Peek != ')')
        {
            if (Peek == '$' && _i == _p.Length - 1) break;   // the end anchor, taken by the caller
            items.Add(Quantified());
        }
        return items.Count == 0 ? _g.Empty() : _g.Seq([.. items]);
    }

    int Quantified()
    {
        int atom = Atom();
        if (!More) return atom;
        int min, max;
        switch (Peek)
        {
            case '*': _i++; min = 0; max = -1; break;
            case '+': _i++; min = 1; max = -1; break;
            case '?': _i++; min = 0; max = 1; break;
            case '{':
                int close = _p.IndexOf('}', _i);
                if (close < 0) throw Error("unclosed {");
                var spec = _p[(_i + 1)..close].Split(',');
                if (spec.Length > 2 || !int.TryParse(spec[0], out min)) throw Error("bad {n,m}");
                max = spec.Length == 1 ? min : spec[1].Length == 0 ? -1 : int.TryParse(spec[1], out var m) ? m : throw Error("bad {n,m}");
                _i = close + 1;
                break;
            default: return atom;
        }
        if (More && Peek == '?') _i++;   // lazy: the same language
        if (min > _maxRepeat || max > _maxRepeat) throw Error($"a count above {_maxRepeat}");
        return _g.Repeat(atom, min, max < 0 ? null : max);
    }

    int Atom()
    {
        char c = _p[_i++];
        switch (c)
        {
            case '(':
                if (More && Peek == '?')
                {
                    if (_i + 1 < _p.Length && _p[_i + 1] == ':') _i += 2;
                    else throw Error("lookaround and named groups are not supported");
                }
                int inner = Alternation();
                if (!More || Peek != ')') throw Error("unclosed (");
                _i++;
                return inner;
            case '[': return Class();
            case '.': return _raw ? AnyCharExcept(ByteSet.Of()) : _json.PlainChar();
            case '\\': return Escape(inClass: false, out _);
            case '^' or '$': throw Error("anchors are supported only at the start and the end");
            case ')' or '*' or '+' or '?' or '{' or '|': throw Error($"unexpected '{c}'");
            default:
                if (char.IsHighSurrogate(c) && More) return Literal(new string([c, _p[_i++]]));
                return Literal(c.ToString());
        }
    }

    /// <summary>A literal character, written as JSON writes it (raw: as itself).</summary>
    int Literal(string ch) => _raw && (ch[0] >= 0x20 || ch is "\n" or "\t" or "\r") ? _g.Literal(ch) : ch switch
    {
        "\"" => _g.Literal("\\\""),
        "\\" => _g.Literal("\\\\"),
        "\n" => _g.Literal("\\n"),
        "\t" => _g.Literal("\\t"),
        "\r" => _g.Literal("\\r"),
        _ when ch[0] < 0x20 => throw Error("a control character"),
        _ => _g.Literal(ch),
    };

    /// <summary>\d \w \s and their negations, or an escaped character.</summary>
    int Escape(bool inClass, out ByteSet? ascii)
    {
        if (!More) throw Error("a trailing \\");
        char c = _p[_i++];
        ascii = null;
        var digits = ByteSet.Range((byte)'0', (byte)'9');
        var word = ByteSet.Range([(byte)'_'], [((byte)'a', (byte)'z'), ((byte)'A', (byte)'Z'), ((byte)'0', (byte)'9')]);
        var space = ByteSet.Of((byte)' ');
        switch (c)
        {
            case 'd': ascii = digits; return _g.Terminal(digits);
            case 'w': ascii = word; return _g.Terminal(word);
            case 's': ascii = space; return _g.Terminal(space);
            case 'D' or 'W' or 'S' when !inClass: return AnyCharExcept(c == 'D' ? digits : c == 'W' ? word : space);
            case 'n': return Literal("\n");
            case 't': return Literal("\t");
            case 'r': return Literal("\r");
            default:
                if (char.IsLetterOrDigit(c)) throw Error($"the escape \\{c}");
                if (c < 0x80) ascii = ByteSet.Of((byte)c);
                return Literal(c.ToString());
        }
    }

    int Class()
    {
        bool negated = More && Peek == '^';
        if (negated) _i++;
        var ascii = new List<byte>();
        var ranges = new List<(byte, byte)>();
        var sets = new List<ByteSet>();
        var others = new List<string>();
        bool first = true;
        while (true)
        {
            if (!More) throw Error("unclosed [");
            if (Peek == ']' && !first) break;
            first = false;
            string ch;
            if (Peek == '\\')
            {
                _i++;
                if (!More) throw Error("a trailing \\");
                char e = Peek;
                if (e is 'd' or 'w' or 's')
                {
                    Escape(inClass: true, out var shorthand);
                    sets.Add(shorthand!.Value);
                    continue;
                }
                _i++;
                ch = e switch
                {
                    'n' => "\n", 't' => "\t", 'r' => "\r",
                    _ when char.IsLetterOrDigit(e) => throw Error($"the escape \\{e} in a class"),
                    _ => e.ToString(),
                };
            }
            else if (char.IsHighSurrogate(Peek) && _i + 1 < _p.Length) { ch = _p.Substring(_i, 2); _i += 2; }
            else { ch = Peek.ToString(); _i++; }
            if (More && Peek == '-' && _i + 1 < _p.Length && _p[_i + 1] != ']')
            {
                _i++;
                char to = _p[_i++];
                if (ch.Length != 1 || ch[0] > 0x7E || to > 0x7E || to < ch[0]) throw Error("a range outside ASCII");
                ranges.Add(((byte)ch[0], (byte)to));
                continue;
            }
            if (ch.Length == 1 && ch[0] < 0x80) ascii.Add((byte)ch[0]);
            else others.Add(ch);
        }
        _i++;
        var set = ByteSet.Range([.. ascii], [.. ranges]);
        foreach (var s in sets) set = new ByteSet(set.A | s.A, set.B | s.B, set.C | s.C, set.D | s.D);
        if (negated)
        {
            if (others.Count > 0) throw Error("a negated class with non-ASCII characters");
            return AnyCharExcept(set);
        }
        if (_raw)
        {
            var raw = new List<int>();
            if (!set.IsEmpty) raw.Add(_g.Terminal(set));
            foreach (var o in others) raw.Add(Literal(o));
            if (raw.Count == 0) throw Error("an empty class");
            return _g.Choice([.. raw]);
        }
        // Characters that JSON must escape are written escaped; the rest as themselves.
        var choices = new List<int>();
        var plain = set.Except(ByteSet.Range([(byte)'"', (byte)'\\'], [(0, 0x1F)]));
        if (!plain.IsEmpty) choices.Add(_g.Terminal(plain));
        foreach (var special in new[] { "\"", "\\", "\n", "\t", "\r" })
            if (set.Contains((byte)special[0])) choices.Add(Literal(special));
        foreach (var o in others) choices.Add(Literal(o));
        if (choices.Count == 0) throw Error("an empty class");
        return _g.Choice([.. choices]);
    }
}
