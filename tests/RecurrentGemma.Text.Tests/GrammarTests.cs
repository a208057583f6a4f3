using System.Text;
using System.Text.Json;
using RecurrentGemma.Text.Grammar;

namespace RecurrentGemma.Text.Tests;

public class GrammarTests
{
    static GrammarMatcher Compile(string schema, bool strict = false) =>
        new(JsonSchemaCompiler.Compile(JsonDocument.Parse(schema).RootElement, strict));

    static bool Accepts(GrammarMatcher m, string text) => m.Accepts(Encoding.UTF8.GetBytes(text));

    [Fact]
    public void Objects_follow_the_schema_order_with_optional_members_and_compact_output()
    {
        var m = Compile("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["a","c"],"additionalProperties":false}""");
        Assert.True(Accepts(m, """{"a":1,"b":"x","c":true}"""));
        Assert.True(Accepts(m, """{"a":-20,"c":false}"""));
        Assert.False(Accepts(m, """{"a":1}"""));                   // c is required
        Assert.False(Accepts(m, """{"c":true,"a":1}"""));          // schema order
        Assert.False(Accepts(m, """{"a":1, "c":true}"""));         // compact
        Assert.False(Accepts(m, """{"a":01,"c":true}"""));         // no leading zeros
        Assert.False(Accepts(m, """{"a":1,"c":true,"d":1}"""));
        Assert.False(Accepts(m, """{,"c":true}"""));
    }

    [Fact]
    public void Strings_are_valid_utf8_with_escapes_that_decode_and_counted_in_characters()
    {
        var m = Compile("""{"type":"string","minLength":2,"maxLength":3}""");
        Assert.True(Accepts(m, "\"ab\""));
        Assert.True(Accepts(m, "\"日本\""));                        // two characters, six bytes
        Assert.True(Accepts(m, "\"a\\n\\u00e9\""));
        Assert.False(Accepts(m, "\"a\""));
        Assert.False(Accepts(m, "\"abcd\""));
        Assert.False(Accepts(m, "\"a\\ud800\""));                 // a lone surrogate escape never decodes
        Assert.False(m.Advance(m.Start, [(byte)'"', 0xC0, 0xAF]).Complete);
        Assert.True(m.Advance(m.Start, [(byte)'"', 0xC0]).IsDead);          // overlong lead byte
        Assert.True(m.Advance(m.Start, [(byte)'"', 0xED, 0xA0]).IsDead);    // UTF-8 surrogate
        Assert.True(m.Advance(m.Start, "\"a\u0001"u8.ToArray()).IsDead);    // raw control character
    }

    [Theory]
    [InlineData(0, 100, new[] { "0", "7", "42", "99", "100" }, new[] { "-1", "101", "007", "1000" })]
    [InlineData(-15, 7, new[] { "-15", "-9", "-1", "0", "7" }, new[] { "-16", "8", "-0", "-20" })]
    [InlineData(123, 4567, new[] { "123", "199", "999", "1000", "4567", "4099" }, new[] { "122", "4568", "5000", "0123" })]
    [InlineData(-300, -120, new[] { "-300", "-299", "-200", "-120", "-150" }, new[] { "-301", "-119", "0", "-99" })]
    public void Integer_ranges_are_exact(int min, int max, string[] inside, string[] outside)
    {
        var m = Compile($$"""{"type":"integer","minimum":{{min}},"maximum":{{max}}}""");
        foreach (var s in inside) Assert.True(Accepts(m, s), s);
        foreach (var s in outside) Assert.False(Accepts(m, s), s);
        for (int v = min - 30; v <= max + 30; v++) Assert.Equal(v >= min && v <= max, Accepts(m, v.ToString()));
    }

    [Theory]
    [InlineData("""{"type":"integer","minimum":5,"maximum":1}""", "no integer lies between the minimum 5 and the maximum 1")]
    [InlineData("""{"type":"integer","minimum":1e308}""", "no integer of at most 15 digits (the most written) is at least 1000000000000000")]
    [InlineData("""{"type":"integer","exclusiveMaximum":-1e300}""", "no integer of at most 15 digits (the most written) is at most -1000000000000001")]
    public void An_empty_integer_range_says_which_bound_empties_it(string schema, string message)
    {
        var e = Assert.Throws<GrammarException>(() => Compile(schema, strict: true));
        Assert.Equal(message, e.Message);
        Assert.Throws<GrammarException>(() => Compile(schema, strict: false));   // no valid document: not ignorable
    }

    [Theory]
    [InlineData("""{"$ref":"#"}""")]
    [InlineData("""{"allOf":[{"$ref":"#"}]}""")]
    [InlineData("""{"anyOf":[{"$ref":"#"}]}""")]
    [InlineData("""{"$ref":"#/$defs/a","$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}}}""")]
    [InlineData("""{"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"],"additionalProperties":false}""")]
    [InlineData("""{"type":"array","items":{"$ref":"#"},"minItems":1}""")]
    public void A_recursion_with_no_way_out_is_refused_not_generated_forever(string schema)
    {
        // Before: the self-references compiled to a grammar whose matcher stopped at once with
        // nothing (an empty "document"), the required nesting ran to max_tokens ({"a":{"a":…).
        foreach (bool strict in new[] { true, false })
        {
            var e = Assert.Throws<GrammarException>(() => Compile(schema, strict));
            Assert.Contains("no finite JSON document", e.Message);
        }
        // In a tool's parameters the error names the tool.
        var tools = new ToolPrompt([new ToolDefinition("ok", null, JsonDocument.Parse("""{"type":"object"}""").RootElement),
                                    new ToolDefinition("loop", null, JsonDocument.Parse(schema).RootElement)]);
        Assert.Equal("tools[1].function.parameters", Assert.Throws<GrammarException>(() => ToolCallGrammar.Build(tools)).Path);
    }

    [Fact]
    public void A_branch_with_no_way_out_is_never_entered_while_the_rest_of_the_schema_stays()
    {
        // "a" can only nest forever, "b" ends: a document must leave "a" out, so generation may not start it.
        var m = Compile("""
        {"type":"object","properties":{"a":{"$ref":"#/$defs/loop"},"b":{"type":"string"},"c":{"anyOf":[{"$ref":"#/$defs/loop"},{"type":"null"}]}},
         "required":["b"],"additionalProperties":false,
         "$defs":{"loop":{"type":"object","properties":{"x":{"$ref":"#/$defs/loop"}},"required":["x"],"additionalProperties":false}}}
        """);
        Assert.True(Accepts(m, """{"b":"x"}"""));
        Assert.True(Accepts(m, """{"b":"x","c":null}"""));
        Assert.True(m.Advance(m.Start, "{\"a\":"u8.ToArray()).IsDead);
        Assert.True(m.Advance(m.Start, "{\"b\":\"x\",\"c\":{"u8.ToArray()).IsDead);
        Assert.False(m.Advance(m.Start, "{\"b\":\"x\",\"c\":n"u8.ToArray()).IsDead);
        // A recursion with a way out is kept whole: a tree of any depth.
        var tree = Compile("""{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#"}}},"required":["kids"],"additionalProperties":false}""");
        Assert.True(Accepts(tree, """{"kids":[{"kids":[]},{"kids":[{"kids":[]}]}]}"""));
    }

    [Fact]
    public void Enum_and_const_values_of_another_type_than_the_schema_names_are_never_written()
    {
        // Before: {"type":"integer","enum":["x",3]} wrote "x", a string.
        foreach (bool strict in new[] { true, false })
        {
            var m = Compile("""{"type":"integer","enum":["x",3,2.5,4.0,null]}""", strict);
            Assert.True(Accepts(m, "3"));
            Assert.True(Accepts(m, "4.0"));   // 4.0 is an integer in JSON Schema
            Assert.False(Accepts(m, "\"x\""));
            Assert.False(Accepts(m, "2.5"));
            Assert.False(Accepts(m, "null"));
            var n = Compile("""{"type":["number","null"],"enum":["x",2.5,null,true]}""", strict);
            Assert.True(Accepts(n, "2.5") && Accepts(n, "null"));
            Assert.False(Accepts(n, "\"x\"") || Accepts(n, "true"));
            var e = Assert.Throws<GrammarException>(() => Compile("""{"type":"string","const":5}""", strict));
            Assert.Equal("const", e.Path);
        }
    }

    [Theory]
    [InlineData("""{"type":"string","enum":["ab","abc"],"maxLength":2}""", "maxLength")]
    [InlineData("""{"const":"a","enum":["b"]}""", "enum")]
    [InlineData("""{"$ref":"#/$defs/a","type":"string","$defs":{"a":{"type":"integer"}}}""", "type")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer"}},"anyOf":[{"required":["a"]}]}""", "type")]
    [InlineData("""{"anyOf":[{"type":"integer"}],"minimum":3}""", "minimum")]
    [InlineData("""{"allOf":[{"type":"integer"}],"maximum":3}""", "maximum")]
    [InlineData("""{"type":"string","format":"email","maxLength":3}""", "maxLength")]
    [InlineData("""{"type":"string","format":"uuid","pattern":"^x$"}""", "pattern")]
    public void Strict_mode_refuses_a_constraint_that_the_deciding_keyword_would_leave_unenforced(string schema, string culprit)
    {
        // Before, each of these compiled in strict mode and wrote documents that broke the named keyword.
        var e = Assert.Throws<GrammarException>(() => Compile(schema, strict: true));
        Assert.Equal(culprit, e.Path);
        Assert.Contains("strict mode", e.Message);
    }

    [Theory]
    [InlineData("uri", new[] { "https://example.com", "http://a.b.io:8080/x/y?q=1&r=2", "https://api.v2.example.org/items/42" }, new[] { "ftp://x.com", "https://", "https://-a.com", "example.com", "https://a.com:0" })]
    [InlineData("ipv4", new[] { "0.0.0.0", "255.255.255.255", "192.168.1.10" }, new[] { "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5" })]
    [InlineData("hostname", new[] { "localhost", "a-b.c", "db-1.internal.example" }, new[] { "-a", "a-", "a..b", "" })]
    public void Uri_ipv4_and_hostname_formats_write_what_they_name(string format, string[] inside, string[] outside)
    {
        var m = Compile($$"""{"type":"string","format":"{{format}}"}""", strict: true);
        foreach (var v in inside) Assert.True(Accepts(m, $"\"{v}\""), v);
        foreach (var v in outside) Assert.False(Accepts(m, $"\"{v}\""), v);
        if (format == "uri") foreach (var v in inside) Assert.True(Uri.TryCreate(v, UriKind.Absolute, out _), v);
    }

    [Fact]
    public void A_length_limit_the_format_always_meets_is_no_conflict_in_strict_mode()
    {
        // Pydantic's HttpUrl: a uri of 1 to 2083 characters. Before: a 400 (format 'uri' not supported).
        var url = Compile("""{"type":"string","format":"uri","minLength":1,"maxLength":2083}""", strict: true);
        Assert.True(Accepts(url, "\"https://example.com/a\""));
        Compile("""{"type":"string","format":"uuid","minLength":36,"maxLength":36}""", strict: true);
        // A limit the format can break is still refused, naming the limit.
        Assert.Equal("maxLength", Assert.Throws<GrammarException>(() => Compile("""{"type":"string","format":"uuid","maxLength":35}""", strict: true)).Path);
        Assert.Equal("minLength", Assert.Throws<GrammarException>(() => Compile("""{"type":"string","format":"email","minLength":7}""", strict: true)).Path);
        // The lengths are the grammar's own: a date is 10 bytes, an email 6 to 90, a uuid 36.
        var g = new ByteGrammar();
        var json = JsonDocument.Parse("""{"type":"string","format":"email"}""").RootElement;
        int email = JsonSchemaCompiler.CompileInto(g, json, strict: true);
        Assert.True(g.TryLengthRange(email, out int min, out int max));
        Assert.Equal((8, 92), (min, max));   // with the two quotes
        int star = g.Star(g.Byte((byte)'a'));
        Assert.False(g.TryLengthRange(star, out _, out _));   // a recursion has no finite bound
    }

    [Fact]
    public void Without_strict_a_pattern_or_length_beside_a_format_is_what_is_kept()
    {
        // Before, the format won and a 3-character limit wrote a 60-character email address.
        var m = Compile("""{"type":"string","format":"email","maxLength":3}""");
        Assert.True(Accepts(m, "\"abc\""));
        Assert.False(Accepts(m, "\"a@b.co\""));
        var p = Compile("""{"type":"string","format":"uuid","pattern":"^x+$"}""");
        Assert.True(Accepts(p, "\"xx\""));
        Assert.False(Accepts(p, "\"123e4567-e89b-12d3-a456-426614174000\""));
        var f = Compile("""{"type":"string","format":"uuid"}""");   // alone, the format holds
        Assert.False(Accepts(f, "\"xx\""));
    }

    [Theory]
    [InlineData("""{"oneOf":[{"type":"integer"},{"type":"string"}]}""", true)]
    [InlineData("""{"oneOf":[{"type":"integer"},{"type":"number"}]}""", false)]   // 3 matches both
    [InlineData("""{"oneOf":[{"const":"a"},{"enum":["b","c"]},{"type":"integer"}]}""", true)]
    [InlineData("""{"oneOf":[{"enum":["a","b"]},{"enum":["b"]}]}""", false)]
    [InlineData("""{"oneOf":[{"enum":[1]},{"enum":[1.0]}]}""", false)]          // the same number
    [InlineData("""{"oneOf":[{"const":"a"},{"type":"string"}]}""", false)]
    [InlineData("""{"oneOf":[{"type":"object","properties":{"k":{"const":"cat"},"m":{"type":"string"}},"required":["k","m"]},{"$ref":"#/$defs/dog"}],"$defs":{"dog":{"type":"object","properties":{"k":{"enum":["dog"]}},"required":["k"]}}}""", true)]
    [InlineData("""{"oneOf":[{"type":"object","properties":{"k":{"const":"cat"}},"required":["k"]},{"type":"object","properties":{"k":{"const":"cat"},"n":{"type":"integer"}},"required":["k"]}]}""", false)]
    [InlineData("""{"oneOf":[{"type":"object","properties":{"k":{"const":"cat"}}},{"type":"object","properties":{"k":{"const":"dog"}}}]}""", false)]   // k optional: {} matches both
    [InlineData("""{"oneOf":[{"type":"integer"},{}]}""", false)]
    public void Strict_oneOf_needs_branches_no_value_matches_twice(string schema, bool compiles)
    {
        Compile(schema, strict: false);   // without strict, oneOf is taken as anyOf
        if (compiles) Compile(schema, strict: true);
        else Assert.Equal("oneOf", Assert.Throws<GrammarException>(() => Compile(schema, strict: true)).Path);
    }

    [Theory]
    [InlineData("""{"type":"number","minimum":0,"maximum":1}""", new[] { "0", "0.5", "1", "1.0", "1.000", "0.999999" }, new[] { "1.5", "-0.1", "2", "1.01", "1e0", "-1" })]
    [InlineData("""{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":10}""", new[] { "0.001", "9.99", "5", "0.00000001" }, new[] { "0", "0.0", "10", "10.0", "-1", "-0.5" })]
    [InlineData("""{"type":"number","minimum":-5,"maximum":-2}""", new[] { "-5", "-2", "-3.5", "-2.0", "-5.000", "-4.25" }, new[] { "-5.1", "-1.9", "2", "-1", "-6" })]
    [InlineData("""{"type":"number","minimum":-3,"exclusiveMaximum":2}""", new[] { "-3", "-2.5", "0", "1.999", "-0.5" }, new[] { "2", "2.0", "-3.01", "-4" })]
    [InlineData("""{"type":"number","minimum":2,"exclusiveMinimum":2,"maximum":9,"exclusiveMaximum":12}""", new[] { "2.5", "9", "9.0" }, new[] { "2", "2.0", "9.5", "10" })]
    [InlineData("""{"type":"number","minimum":100}""", new[] { "100", "100.25", "12345.5", "999999999999999" }, new[] { "99.9", "0", "-100" })]
    [InlineData("""{"type":"number","minimum":0.5,"maximum":2.25}""", new[] { "0.5", "0.50", "0.6", "1", "2.25", "2.2", "2.249", "2.250" }, new[] { "0.4", "0.49999", "2.26", "2.3", "3", "0" })]
    [InlineData("""{"type":"number","exclusiveMinimum":-1.05,"exclusiveMaximum":-1.04}""", new[] { "-1.045", "-1.0401", "-1.0499" }, new[] { "-1.05", "-1.04", "-1.050", "-1.0", "-1.1" })]
    [InlineData("""{"type":"number","minimum":0.1,"maximum":0.1}""", new[] { "0.1", "0.10", "0.100" }, new[] { "0.11", "0.09", "0", "1" })]
    // Finer than the 15 fraction digits written (binary floating point's 0.1 + 0.2): the same numbers pass as against the exact bound.
    [InlineData("""{"type":"number","exclusiveMinimum":0.30000000000000004,"maximum":0.70000000000000001}""", new[] { "0.300000000000001", "0.31", "0.7", "0.700000000000000" }, new[] { "0.3", "0.300000000000000", "0.700000000000001", "0.71" })]
    [InlineData("""{"type":"number","minimum":-2.0000000000000004,"exclusiveMaximum":-1.9999999999999996}""", new[] { "-2", "-2.0", "-2.000000000000000" }, new[] { "-1.999999999999999", "-1.9999999999999", "-2.000000000000001", "-2.1", "-1.99" })]   // only −2 lies between
    // Beyond what decimal holds (1e-30 read as 0 before: "0" was written for x ≥ 1e-30) and beyond 15 integer digits.
    [InlineData("""{"type":"number","exclusiveMinimum":0,"minimum":1e-30}""", new[] { "0.000000000000001", "1" }, new[] { "0", "0.0", "-1" })]
    [InlineData("""{"type":"number","maximum":-1e-30}""", new[] { "-0.000000000000001", "-1" }, new[] { "0", "0.5" })]
    [InlineData("""{"type":"number","minimum":999999999999999.5,"maximum":1e20}""", new[] { "999999999999999.5", "999999999999999.75" }, new[] { "999999999999999", "1000000000000000" })]
    public void Number_bounds_are_kept(string schema, string[] inside, string[] outside)
    {
        // Before, strict mode refused them (400) and without strict they were ignored (a "minimum":5 wrote -777777777777777).
        foreach (bool strict in new[] { true, false })
        {
            var m = Compile(schema, strict);
            foreach (var v in inside) Assert.True(Accepts(m, v), $"{v} in {schema}");
            foreach (var v in outside) Assert.False(Accepts(m, v), $"{v} in {schema}");
        }
    }

    [Fact]
    public void Many_bounded_numbers_share_their_rules_and_stay_under_the_schema_limit()
    {
        // 300 numbers, 30 distinct bounds: before the rules were shared, 30 of them took 7.7k of the 20k allowed.
        var props = string.Join(",", Enumerable.Range(0, 300).Select(i => $"\"p{i}\":{{\"type\":\"number\",\"minimum\":{i % 30}.25,\"exclusiveMaximum\":{i % 30 + 50}.125}}"));
        var g = JsonSchemaCompiler.Compile(JsonDocument.Parse($$"""{"type":"object","properties":{{{props}}},"additionalProperties":false}""").RootElement, strict: true);
        Assert.True(g.RuleCount < 10_000, $"{g.RuleCount} rules");
    }

    [Fact]
    public void Every_number_a_bounded_schema_writes_is_within_its_bounds_and_every_plain_one_within_them_is_written()
    {
        // Integer parts −13..13 with fractions that land on, near and between the bounds.
        string[] fractions = ["", ".0", ".00", ".5", ".05", ".001", ".999", ".10", ".9989", ".9991", ".049", ".051", ".50"];
        var numbers = Enumerable.Range(-13, 27).SelectMany(i => fractions.Select(f => i < 0 ? $"-{-i}{f}" : $"{i}{f}"))
            .Concat(fractions.Where(f => f.Length > 0).Select(f => $"-0{f}")).ToList();
        var bounds = new decimal?[] { null, -10m, -3m, -1.5m, -1m, -0.05m, 0m, 0.5m, 1m, 1.999m, 4m, 11m };
        int schemas = 0;
        foreach (var lo in bounds)
            foreach (var hi in bounds)
                foreach (bool loIn in new[] { true, false })
                    foreach (bool hiIn in new[] { true, false })
                    {
                        if (lo is null && hi is null) continue;
                        var ci = System.Globalization.CultureInfo.InvariantCulture;
                        string json = "{\"type\":\"number\"" + (lo is { } l ? $",\"{(loIn ? "minimum" : "exclusiveMinimum")}\":{l.ToString(ci)}" : "")
                                    + (hi is { } h ? $",\"{(hiIn ? "maximum" : "exclusiveMaximum")}\":{h.ToString(ci)}" : "") + "}";
                        bool Within(decimal v) => (lo is null || (loIn ? v >= lo : v > lo)) && (hi is null || (hiIn ? v <= hi : v < hi));
                        bool any = numbers.Any(n => Within(decimal.Parse(n, System.Globalization.CultureInfo.InvariantCulture)) && !n.StartsWith("-0"));
                        GrammarMatcher m;
                        try { m = Compile(json, strict: true); }
                        catch (GrammarException) { Assert.False(any, $"{json} was refused, yet numbers lie within it"); continue; }
                        schemas++;
                        foreach (var n in numbers)
                        {
                            bool within = Within(decimal.Parse(n, System.Globalization.CultureInfo.InvariantCulture));
                            bool accepted = Accepts(m, n);
                            if (accepted) Assert.True(within, $"{json} wrote {n}");
                            else if (within) Assert.True(n.StartsWith("-0"), $"{json} refused {n}");   // "-0…" may be left out: a subset
                        }
                    }
        Assert.True(schemas > 250, $"{schemas} bounded schemas compiled");
    }

    [Fact]
    public void Refs_recurse_and_enums_consts_anyof_arrays_and_formats_compile()
    {
        var m = Compile("""
        {"$defs":{"node":{"type":"object","properties":{"v":{"enum":["x",2,null]},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"],"additionalProperties":false}},
         "$ref":"#/$defs/node"}
        """);
        Assert.True(Accepts(m, """{"v":"x"}"""));
        Assert.True(Accepts(m, """{"v":2,"kids":[{"v":null},{"v":"x","kids":[]}]}"""));
        Assert.False(Accepts(m, """{"v":3}"""));
        Assert.False(Accepts(m, """{"v":2,"kids":[{"v":null},{"v":null},{"v":null}]}"""));

        var f = Compile("""{"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"},"k":{"const":"fixed"},"n":{"anyOf":[{"type":"number"},{"type":"null"}]},"p":{"type":"array","prefixItems":[{"type":"boolean"},{"type":"string","maxLength":1}],"items":false}},"required":["d","t","u","k","n","p"]}""");
        Assert.True(Accepts(f, """{"d":"2024-02-28","t":"2024-12-31T23:59:59.5Z","u":"123e4567-e89b-12d3-a456-426614174000","k":"fixed","n":-1.5e3,"p":[true,"z"]}"""));
        Assert.False(Accepts(f, """{"d":"2024-02-30","t":"2024-12-31T23:59:59Z","u":"123e4567-e89b-12d3-a456-426614174000","k":"fixed","n":null,"p":[true,"z"]}"""));
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^(a)\\1$"}""", "pattern")]
    [InlineData("""{"type":"string","pattern":"(?=x)y"}""", "pattern")]
    [InlineData("""{"type":"object","properties":{"x":{"type":"string","format":"ipv6"}}}""", "properties.x.format")]
    [InlineData("""{"type":"object","properties":{"x":{"type":"number","multipleOf":0.129}}}""", "properties.x.multipleOf")]
    [InlineData("""{"type":"object","properties":{"x":{"not":{"type":"null"}}}}""", "properties.x.not")]
    public void Strict_mode_names_the_keyword_it_cannot_enforce_and_non_strict_ignores_it(string schema, string path)
    {
        var e = Assert.Throws<GrammarException>(() => Compile(schema, strict: true));
        Assert.Equal(path, e.Path);
        Compile(schema, strict: false);
    }

    [Theory]
    [InlineData("\\d{3}-\\d{4}", new[] { "555-1234" }, new[] { "5551234", "555-12345", "x555-1234", "555-1234\n" })]   // whole text, anchored or not
    [InlineData("^a\"b\\\\c$", new[] { "a\"b\\c" }, new[] { "a\\\"b\\\\c", "ab" })]                             // a quote and a backslash are themselves
    [InlineData("x.y", new[] { "x-y", "x\"y", "xéy" }, new[] { "x\ny", "xy" })]                                 // . is any character but a control
    [InlineData("[^a-z]+", new[] { "\"\\!", "ÄÖ", "12" }, new[] { "a", "\t", "" })]
    public void A_raw_regex_matches_whole_texts_with_characters_as_themselves(string pattern, string[] inside, string[] outside)
    {
        var m = new GrammarMatcher(RegexGrammar.Compile(pattern));
        foreach (var s in inside) Assert.True(Accepts(m, s), s);
        foreach (var s in outside) Assert.False(Accepts(m, s), s);
        Assert.Equal("pattern", Assert.Throws<GrammarException>(() => RegexGrammar.Compile("(?=a)b")).Path);
    }

    [Theory]
    [InlineData("^[a-z]{2,4}-\\d+$", new[] { "ab-1", "abcd-42" }, new[] { "a-1", "abcde-1", "ab-", "Ab-1", "1ab-1" })]
    [InlineData("^(cat|dog)s?$", new[] { "cat", "dogs" }, new[] { "cow", "cats!", "" })]
    [InlineData("x\\.y", new[] { "x.y", "aax.ybb" }, new[] { "xzy", "x.", "" })]
    [InlineData("^[^0-9\"]+$", new[] { "abc", "日本", "a b" }, new[] { "a1", "", "a\\\"" })]
    [InlineData("^\\w+@\\w+\\.com$", new[] { "me@site.com" }, new[] { "me@site.org", "@site.com" })]
    [InlineData("^a\"b$", new[] { "a\\\"b" }, new[] { "a\"b", "ab" })]
    public void Patterns_match_as_regexes_do(string pattern, string[] inside, string[] outside)
    {
        var m = Compile($$"""{"type":"string","pattern":{{JsonSerializer.Serialize(pattern)}}}""", strict: true);
        // Inputs are JSON string bodies: what appears between the quotes.
        foreach (var s in inside) Assert.True(Accepts(m, "\"" + s + "\""), s);
        foreach (var s in outside) Assert.False(Accepts(m, "\"" + s + "\""), s);
    }

    [Fact]
    public void Schemas_over_the_limits_are_refused()
    {
        var deep = string.Concat(Enumerable.Repeat("""{"type":"array","items":""", 40)) + "{}" + new string('}', 40);
        Assert.Throws<GrammarException>(() => JsonSchemaCompiler.Compile(JsonDocument.Parse(deep).RootElement, false));
        Assert.Throws<GrammarException>(() => Compile("""{"type":"string","maxLength":100000}"""));
    }

    /// <summary>Brute force: an id is allowed iff the grammar accepts its bytes from the state.</summary>
    static void AssertMaskExact(GemmaTokenizer tok, GrammarMatcher m, string prefix)
    {
        var index = TokenIndex.For(tok);
        var state = m.Advance(m.Start, Encoding.UTF8.GetBytes(prefix));
        Assert.False(state.IsDead, prefix);
        var mask = index.Allowed(m, state);
        int allowed = 0;
        for (int id = 0; id < tok.VocabSize; id++)
        {
            var bytes = index.Bytes(id);
            bool expected = !bytes.IsEmpty && !m.Advance(state, bytes).IsDead;
            bool actual = (mask[id >> 6] >> (id & 63) & 1) != 0;
            Assert.True(expected == actual, $"after '{prefix}': id {id} ('{tok.PieceText(id)}') expected {(expected ? "allowed" : "refused")}");
            if (actual) allowed++;
        }
        Assert.True(allowed > 0, $"after '{prefix}' nothing is allowed");
    }

    public static TheoryData<string> Prefixes => new() { "", "{", "{\"name\":", "{\"name\":\"ab", "{\"name\":\"x\\", "{\"name\":\"x\",\"age\":4", "{\"name\":\"x\",\"age\":42,\"tags\":[", "{\"name\":\"x\",\"age\":42,\"tags\":[\"a\"" };

    const string PersonSchema = """{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},"tags":{"type":"array","items":{"type":"string"}}},"required":["name","age"],"additionalProperties":false}""";

    [Theory, MemberData(nameof(Prefixes))]
    public void Masks_are_exact_on_the_small_vocabulary(string prefix) => AssertMaskExact(TokenizerFixtures.Tiny, Compile(PersonSchema), prefix);

    [Theory]
    [InlineData("{\"name\":\"")]
    [InlineData("{\"name\":\"x\",\"age\":1")]
    public void Masks_are_exact_on_gemmas_vocabulary(string prefix) => AssertMaskExact(TokenizerFixtures.Gemma, Compile(PersonSchema), prefix);

    const string BoundedSchema = """{"type":"object","properties":{"name":{"type":"string","maxLength":12},"code":{"type":"string","minLength":3,"maxLength":5},"tags":{"type":"array","items":{"type":"string","maxLength":4},"maxItems":3},"either":{"anyOf":[{"type":"string","maxLength":2},{"type":"string","maxLength":6}]}},"required":["name","code","tags","either"],"additionalProperties":false}""";

    /// <summary>Inside strings with a maxLength, runs of plain characters are answered from a
    /// table by how many characters are left (only the other ids are walked): the masks must still
    /// be exactly the brute force's, at every count left, next to escapes and multi-byte characters.</summary>
    public static TheoryData<string, bool> BoundedPrefixes => new()
    {
        { "{\"name\":\"", true },                  // the first character
        { "{\"name\":\"a", true },
        { "{\"name\":\"abcdef", true },
        { "{\"name\":\"abcdefghijk", true },       // one character left
        { "{\"name\":\"abcdefghijkl", false },     // none left: only the closing quote
        { "{\"name\":\"a\\n", true },             // after an escape
        { "{\"name\":\"é€", true },                // after multi-byte characters
        { "{\"name\":\"ab\",\"code\":\"xy", true },  // still under minLength: no quote yet
        { "{\"name\":\"ab\",\"code\":\"xyz", true },
        { "{\"name\":\"ab\",\"code\":\"xyz\",\"tags\":[\"q", true },
        { "{\"name\":\"ab\",\"code\":\"xyz\",\"tags\":[],\"either\":\"k", false },   // two bounds at once (anyOf)
    };

    [Fact]
    public void An_unbounded_string_is_counted_without_limit_and_its_masks_stay_exact()
    {
        var m = Compile(PersonSchema);
        Assert.Equal(int.MaxValue, m.PlainBudget(m.Advance(m.Start, Encoding.UTF8.GetBytes("{\"name\":\"ab"))));
        Assert.Equal(-1, m.PlainBudget(m.Advance(m.Start, Encoding.UTF8.GetBytes("{\"name\":\"ab\","))));   // outside the string
        AssertMaskExact(TokenizerFixtures.Gemma, m, "{\"name\":\"ab");
    }

    [Fact]
    public void String_states_that_behave_alike_share_one_mask_and_every_mask_stays_exact()
    {
        // One matcher for the whole walk, so later positions are answered from the shared masks.
        var m = Compile("""{"type":"object","properties":{"a":{"type":"string","minLength":5,"maxLength":8},"b":{"type":"string","minLength":300}},"required":["a","b"],"additionalProperties":false}""");
        var tiny = TokenizerFixtures.Tiny;
        var gemma = TokenizerFixtures.Gemma;
        var prefix = "{\"a\":\"";
        for (int i = 0; i <= 8; i++, prefix += "x") AssertMaskExact(tiny, m, prefix);   // through min and up to max
        var inB = "{\"a\":\"xxxxx\",\"b\":\"" + new string('y', 40);
        var deeper = inB + new string('y', 40);
        string? Key(string p) => m.PlainKey(m.Advance(m.Start, Encoding.UTF8.GetBytes(p)), 64);
        Assert.Equal(Key(inB), Key(deeper));                      // far from both ends of "b": the same key
        Assert.NotEqual(Key("{\"a\":\"xx"), Key("{\"a\":\"xxx"));   // near the minimum: not
        AssertMaskExact(gemma, m, inB);
        AssertMaskExact(gemma, m, deeper);                        // served from the shared mask
        AssertMaskExact(gemma, m, "{\"a\":\"xxxxx\",\"b\":\"" + new string('y', 290));   // the minimum within reach of one id
    }

    [Theory, MemberData(nameof(BoundedPrefixes))]
    public void Masks_inside_length_bounded_strings_are_exact_on_both_vocabularies(string prefix, bool counted)
    {
        var m = Compile(BoundedSchema);
        var state = m.Advance(m.Start, Encoding.UTF8.GetBytes(prefix));
        Assert.Equal(counted, m.PlainBudget(state) >= 0);
        AssertMaskExact(TokenizerFixtures.Tiny, m, prefix);
        AssertMaskExact(TokenizerFixtures.Gemma, Compile(BoundedSchema), prefix);
    }

    [Fact]
    public void Ids_that_span_structure_and_byte_fallback_pieces_are_allowed_when_they_fit()
    {
        var tok = TokenizerFixtures.Gemma;
        var m = Compile(PersonSchema);
        var index = TokenIndex.For(tok);
        bool Allowed(string prefix, string piece)
        {
            var state = m.Advance(m.Start, Encoding.UTF8.GetBytes(prefix));
            var ids = tok.Encode(piece);
            Assert.Single(ids);
            var mask = index.Allowed(m, state);
            return (mask[ids[0] >> 6] >> (ids[0] & 63) & 1) != 0;
        }
        int Byte(byte b) => Enumerable.Range(0, tok.VocabSize).First(id => tok.PieceText(id) == $"<0x{b:X2}>");
        // Multi-byte characters through byte-fallback ids: the lead byte fits inside a string, not outside.
        var inString = m.Advance(m.Start, Encoding.UTF8.GetBytes("{\"name\":\""));
        var mask = index.Allowed(m, inString);
        Assert.True((mask[Byte(0xE6) >> 6] >> (Byte(0xE6) & 63) & 1) != 0);
        Assert.False((mask[Byte(0x80) >> 6] >> (Byte(0x80) & 63) & 1) != 0);   // a continuation byte cannot start a character
        var afterLead = m.Advance(inString, [0xE6]);
        var mask2 = index.Allowed(m, afterLead);
        Assert.True((mask2[Byte(0x97) >> 6] >> (Byte(0x97) & 63) & 1) != 0);
        Assert.False((mask2[Byte(0x41) >> 6] >> (Byte(0x41) & 63) & 1) != 0);
        // Ids that span structure: one covering the end of a key and the colon is allowed there.
        var spanning = Enumerable.Range(0, tok.VocabSize).Where(id => index.Bytes(id).SequenceEqual("\":"u8)).ToList();
        Assert.NotEmpty(spanning);
        var afterKey = m.Advance(m.Start, Encoding.UTF8.GetBytes("{\"name"));
        Assert.All(spanning, id => Assert.True((index.Allowed(m, afterKey)[id >> 6] >> (id & 63) & 1) != 0));
        Assert.False(Allowed("{", "{"));   // a second brace cannot open here
    }
}
