using System.Text.Json;

namespace RecurrentGemma.Text.Grammar;

/// <summary>The scalar types' keywords: strings (format, pattern, lengths), integers and numbers (bounds), counts.</summary>
public sealed partial class JsonSchemaCompiler
{
    NumberRangeGrammar? _numbers;   // one per compile: its rules are shared by every bounded number
    readonly Dictionary<int, NumberRangeGrammar> _fractions = [];   // the same for multipleOf 0.1, 0.01, …
    MultipleOfGrammar? _multiples;
    DecimalMultipleGrammar? _decimals;

    int String(JsonElement s, string path)
    {
        if (s.TryGetProperty("format", out var format) && format.ValueKind == JsonValueKind.String)
        {
            int? body = format.GetString() switch
            {
                "date" => _json.Date(),
                "time" => _json.Time(),
                "date-time" => _json.DateTime(),
                "uuid" => _json.Uuid(),
                "email" => _json.Email(),
                "uri" => _json.Uri(),
                "ipv4" => _json.Ipv4(),
                "hostname" => _json.Hostname(),
                _ when _strict => throw new GrammarException($"the format '{format.GetString()}' is not supported in strict mode", Join(path, "format")),
                _ => null,
            };
            var other = new[] { "pattern", "minLength", "maxLength" }.FirstOrDefault(k => s.TryGetProperty(k, out _));
            // Lengths the format's every string already meets are no conflict (Pydantic's HttpUrl:
            // a uri of 1 to 2083 characters). The formats are ASCII: bytes are characters.
            if (body is { } f && other is not null && !s.TryGetProperty("pattern", out _) && _g.TryLengthRange(f, out int shortest, out int longest)
                && shortest >= (Count(s, "minLength", path, unrolled: false) ?? 0) && longest <= (Count(s, "maxLength", path, unrolled: false) ?? int.MaxValue))
                other = null;
            if (body is not null && other is not null && _strict)
                throw new GrammarException($"'{other}' together with format is not supported in strict mode: only the format would be enforced", Join(path, other));
            // Without strict the pattern or lengths win: they always assert, a format is only an
            // annotation unless a validator opts in (JSON Schema 2020-12).
            if (body is { } written && other is null) return _g.Seq(_json.Quote, written, _json.Quote);
        }
        if (s.TryGetProperty("pattern", out var pattern) && pattern.ValueKind == JsonValueKind.String)
        {
            if (s.TryGetProperty("minLength", out _) || s.TryGetProperty("maxLength", out _))
            {
                if (_strict) throw new GrammarException("pattern together with minLength/maxLength is not supported in strict mode", Join(path, "pattern"));
            }
            else
            {
                try { return _g.Seq(_json.Quote, PatternGrammar.Compile(_g, _json, pattern.GetString()!, _limits.MaxRepeat), _json.Quote); }
                catch (GrammarException e) when (!_strict) { _ = e; }   // not strict: the pattern is ignored
                catch (GrammarException e) { throw new GrammarException(e.Message, Join(path, "pattern")); }
            }
        }
        return _json.String(Count(s, "minLength", path) ?? 0, Count(s, "maxLength", path));
    }

    int Integer(JsonElement s, string path)
    {
        long? lo = Bound(s, "minimum", path), hi = Bound(s, "maximum", path);
        if (Bound(s, "exclusiveMinimum", path) is { } xlo) lo = Math.Max(lo ?? long.MinValue, xlo + 1);
        if (Bound(s, "exclusiveMaximum", path) is { } xhi) hi = Math.Min(hi ?? long.MaxValue, xhi - 1);
        if (Multiple(s, path) is { } m)
        {
            if (IntegerStep(m) is not { } k)
            {
                if (_strict) throw new GrammarException($"multipleOf {m} is too large for the integers written (15 digits)", Join(path, "multipleOf"));
            }
            else if (k > 1 && IntegerMultiples(k, lo, hi, path) is { } multiples) return multiples;
        }
        if (lo is null && hi is null) return _json.Integer;
        try { return _json.IntegerRange(lo, hi); }
        catch (GrammarException e) { throw new GrammarException(e.Message, path); }
    }

    /// <summary>multipleOf as a positive decimal (null: absent).</summary>
    static decimal? Multiple(JsonElement s, string path)
    {
        if (!s.TryGetProperty("multipleOf", out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDecimal(out decimal m) || m <= 0)
            throw new GrammarException("multipleOf must be a number greater than 0", Join(path, "multipleOf"));
        return m;
    }

    /// <summary>The integers that are multiples of m = p/q (lowest terms) are the multiples of p.</summary>
    static long? IntegerStep(decimal m)
    {
        try
        {
            decimal q = 1;
            while (decimal.Truncate(m * q) != m * q && q < 1e18m) q *= 10;
            decimal p = m * q;
            if (p > long.MaxValue || decimal.Truncate(p) != p) return null;
            var k = (long)p / System.Numerics.BigInteger.GreatestCommonDivisor((long)p, (long)q);
            return (long)k;
        }
        catch (OverflowException) { return null; }   // a step too large for any written integer
    }

    /// <summary>Integer multiples of k within the bounds; null where that is not supported (then
    /// strict mode refuses, otherwise multipleOf is left out).</summary>
    int? IntegerMultiples(long k, long? lo, long? hi, string path)
    {
        int? rule;
        try { rule = MultipleOfGrammar.Supported(k) || lo is not null || hi is not null ? (_multiples ??= new MultipleOfGrammar(_g)).Multiples(k, lo, hi) : null; }
        catch (GrammarException e) { throw new GrammarException(e.Message, Join(path, "multipleOf")); }
        if (rule is null && _strict)
            throw new GrammarException($"multipleOf {k} is not supported in strict mode here (supported: a multiple whose value without trailing zeros is at most {MultipleOfGrammar.MaxReduced}, or bounds with at most {MultipleOfGrammar.MaxListed} multiples on a bounded side)", Join(path, "multipleOf"));
        return rule;
    }

    /// <summary>
    /// A number within its bounds (minimum, maximum and their exclusive forms), written without an
    /// exponent then (<see cref="NumberRangeGrammar"/>).
    /// </summary>
    int Number(JsonElement s, string path)
    {
        (decimal Value, bool Inclusive)? lo = null, hi = null;
        foreach (var (key, lower, exact) in new[] { ("minimum", true, true), ("exclusiveMinimum", true, false), ("maximum", false, true), ("exclusiveMaximum", false, false) })
        {
            if (!s.TryGetProperty(key, out var v)) continue;
            if (v.ValueKind != JsonValueKind.Number) throw new GrammarException($"{key} must be a number", Join(path, key));
            // Past 15 integer digits a bound cuts all or nothing of what is written: clamp it.
            decimal b = v.TryGetDecimal(out decimal value) ? Math.Clamp(value, -1e16m, 1e16m) : v.GetDouble() > 0 ? 1e16m : -1e16m;
            bool inclusive = exact;
            double given = v.GetDouble();
            if (b == 0 && given != 0)
            {
                // Below decimal's 28 digits (1e-30): no written number lies strictly between it and
                // zero, so the bound is the nearest written number on its inward side.
                (b, inclusive) = (lower, given > 0) switch
                {
                    (true, true) => (1e-15m, true),     // x ≥ 1e-30: the smallest positive written number
                    (true, false) => (0m, true),        // x ≥ −1e-30: zero and above
                    (false, true) => (0m, true),        // x ≤ 1e-30: zero and below
                    (false, false) => (-1e-15m, true),  // x ≤ −1e-30
                };
            }
            // Written numbers have at most 15 fraction digits: a finer bound (0.1 + 0.2 computed in
            // binary floating point is 0.30000000000000004) is the nearest such number inward,
            // inclusive — the same numbers pass.
            var rounded = decimal.Round(b, JsonGrammar.MaxFractionDigits, lower ? MidpointRounding.ToPositiveInfinity : MidpointRounding.ToNegativeInfinity);
            if (rounded != b) { b = rounded; inclusive = true; }
            // Of a bound and its exclusive form the tighter wins (the exclusive one where equal).
            if (lower && (lo is null || b > lo.Value.Value || (b == lo.Value.Value && !inclusive))) lo = (b, inclusive);
            if (!lower && (hi is null || b < hi.Value.Value || (b == hi.Value.Value && !inclusive))) hi = (b, inclusive);
        }
        static string Show(decimal d) => d.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var numbers = _numbers ??= new NumberRangeGrammar(_g, _json);
        if (Multiple(s, path) is { } m)
        {
            if (decimal.Truncate(m) == m)
            {
                // A whole step: the integer multiples (numbers too), within bounds rounded inward.
                long? ilo = lo is { } lb ? (long)Math.Clamp(lb.Inclusive ? decimal.Ceiling(lb.Value) : decimal.Floor(lb.Value) + 1, -1e15m, 1e15m) : null;
                long? ihi = hi is { } hb ? (long)Math.Clamp(hb.Inclusive ? decimal.Floor(hb.Value) : decimal.Ceiling(hb.Value) - 1, -1e15m, 1e15m) : null;
                if (IntegerMultiples((long)Math.Min(m, long.MaxValue), ilo, ihi, path) is { } multiples) return multiples;
            }
            else if (FractionStep(m) is { } digits)
            {
                // 0.1, 0.01, …: at most that many fraction digits, bounds rounded inward to them.
                numbers = _fractions.TryGetValue(digits, out var known) ? known : _fractions[digits] = new NumberRangeGrammar(_g, _json, digits);
                if (lo is { } lf) { var r = decimal.Round(lf.Value, digits, MidpointRounding.ToPositiveInfinity); lo = (r, r != lf.Value || lf.Inclusive); }
                if (hi is { } hf) { var r = decimal.Round(hf.Value, digits, MidpointRounding.ToNegativeInfinity); hi = (r, r != hf.Value || hf.Inclusive); }
                return numbers.Range(lo?.Value, lo?.Inclusive ?? true, hi?.Value, hi?.Inclusive ?? true)
                    ?? throw new GrammarException($"no multiple of {Show(m)} lies within the bounds", Join(path, "multipleOf"));
            }
            else if (DecimalMultipleGrammar.Step(m) is { } step)
            {
                // 0.5, 0.25, 2.5, …: the remainder automaton over every digit written (bounds within).
                int? rule;
                try { rule = (_decimals ??= new DecimalMultipleGrammar(_g)).Multiples(m, step.P, step.D, lo?.Value, lo?.Inclusive ?? true, hi?.Value, hi?.Inclusive ?? true); }
                catch (GrammarException e) { throw new GrammarException(e.Message, Join(path, "multipleOf")); }
                if (rule is { } multiples) return multiples;
                if (_strict)
                    throw new GrammarException($"multipleOf {Show(m)} is not supported in strict mode with these bounds (a bounded side may hold at most {MultipleOfGrammar.MaxListed} multiples)", Join(path, "multipleOf"));
            }
            else if (_strict)
                throw new GrammarException($"multipleOf {Show(m)} is not supported in strict mode (supported: whole numbers; 0.1, 0.01, … down to 1e-15; and p·10^-d with p up to {DecimalMultipleGrammar.MaxReduced} and d up to 12, such as 0.5, 0.25, 0.125 or 2.5)", Join(path, "multipleOf"));
        }
        if (lo is null && hi is null) return _json.Number;
        return numbers.Range(lo?.Value, lo?.Inclusive ?? true, hi?.Value, hi?.Inclusive ?? true)
            ?? throw new GrammarException($"no number lies within the bounds{(lo is { } l ? $" {(l.Inclusive ? "≥" : ">")} {Show(l.Value)}" : "")}{(hi is { } h ? $" {(h.Inclusive ? "≤" : "<")} {Show(h.Value)}" : "")}", path);
    }

    /// <summary>d when m is 10^−d (0.1, 0.01, … to 1e-15), else null.</summary>
    static int? FractionStep(decimal m)
    {
        if (m >= 1) return null;
        for (int d = 1; d <= JsonGrammar.MaxFractionDigits; d++)
            if (m * Pow10(d) == 1) return d;
        return null;
        static decimal Pow10(int d) { decimal p = 1; for (int i = 0; i < d; i++) p *= 10; return p; }
    }

    long? Bound(JsonElement s, string key, string path)
    {
        if (!s.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d))
            throw new GrammarException($"{key} must be a number", Join(path, key));
        // Integers are written with at most 15 digits, so bounds beyond that (Zod's safe-integer
        // ±2⁵³−1) cut nothing: clamp them.
        d = Math.Clamp(d, -1e15, 1e15);
        return key is "minimum" or "exclusiveMaximum" ? (long)Math.Ceiling(d) : (long)Math.Floor(d);
    }

    /// <param name="unrolled">whether the count becomes grammar rules (then it is limited); a bound only compared is not.</param>
    int? Count(JsonElement s, string key, string path, bool unrolled = true)
    {
        if (!s.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var n) || n < 0)
            throw new GrammarException($"{key} must be a non-negative integer", Join(path, key));
        if (unrolled && n > _limits.MaxRepeat) throw new GrammarException($"{key} above {_limits.MaxRepeat} is not supported", Join(path, key));
        return n;
    }
}
