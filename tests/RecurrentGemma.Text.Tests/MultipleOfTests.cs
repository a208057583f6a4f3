using System.Globalization;
using System.Text.Json;
using RecurrentGemma.Text.Grammar;
using static RecurrentGemma.Text.Tests.SchemaTesting;

namespace RecurrentGemma.Text.Tests;

/// <summary>multipleOf on integers (the remainder automaton, listed multiples) and numbers (whole
/// steps, and 0.1, 0.01, … as a count of fraction digits), checked value by value.</summary>
public class MultipleOfTests
{
    public static IEnumerable<object?[]> IntegerCases()
    {
        foreach (long k in new long[] { 2, 3, 7, 10, 12, 25, 64, 100, 250, 1000, 6400 })
            foreach (var (lo, hi) in new (long?, long?)[] { (null, null), (0, null), (1, null), (null, 0), (null, -1), (-50, 50), (-5000, 5000), (7, 7), (3, null), (101, null), (null, -101), (-7, null) })
                yield return [k, lo, hi];
    }

    [Theory, MemberData(nameof(IntegerCases))]
    public void Integers_are_exactly_the_multiples_within_the_bounds(long k, long? lo, long? hi)
    {
        var schema = $$"""{"type":"integer","multipleOf":{{k}}{{(lo is { } a ? $",\"minimum\":{a}" : "")}}{{(hi is { } b ? $",\"maximum\":{b}" : "")}}}""";
        bool any = Enumerable.Range(-20000, 40001).Any(v => v % k == 0 && (lo is null || v >= lo) && (hi is null || v <= hi)) || lo is null || hi is null;
        if (!any) { Assert.Throws<GrammarException>(() => Compile(schema, strict: false)); return; }
        var m = Compile(schema, strict: true);
        var probes = Enumerable.Range(-20000, 40001).Select(v => (long)v)
            .Concat([k * 123_456_789L, -k * 98_765_431L, 999_999_999_999_000L, 1_000_000_000_000_000L, 10 * k + 1]);
        foreach (long v in probes)
        {
            bool written = Math.Abs(v) <= 999_999_999_999_999L;
            bool valid = written && v % k == 0 && (lo is null || v >= lo) && (hi is null || v <= hi);
            Assert.True(valid == Accepts(m, v.ToString(CultureInfo.InvariantCulture)), $"{schema}: {v} should be {(valid ? "accepted" : "refused")}");
        }
        Assert.False(Accepts(m, "-0"));
        Assert.False(Accepts(m, k.ToString(CultureInfo.InvariantCulture) + ".0"));
    }

    [Theory]
    [InlineData("""{"type":"integer","multipleOf":65}""")]                            // 65 without its zeros is over 64
    [InlineData("""{"type":"integer","multipleOf":7,"minimum":100000}""")]            // starts far past the first multiple
    [InlineData("""{"type":"number","multipleOf":0.129}""")]                          // 129 over 128 (0.25 and the like: DecimalMultipleOfTests)
    public void What_is_not_supported_is_refused_in_strict_mode_and_left_out_otherwise(string schema)
    {
        Assert.Contains("multipleOf", Assert.Throws<GrammarException>(() => Compile(schema, strict: true)).Path);
        var m = Compile(schema, strict: false);
        Assert.True(Accepts(m, "100001") || Accepts(m, "0.3"));   // a plain (bounded) value is written
    }

    [Fact]
    public void Numbers_with_a_decimal_step_keep_that_many_fraction_digits_within_the_bounds()
    {
        var m = Compile("""{"type":"number","multipleOf":0.01,"minimum":0,"exclusiveMaximum":10.005}""", strict: true);
        foreach (var ok in new[] { "0", "0.01", "1.25", "3.1", "9.99", "10", "10.00", "7" }) Assert.True(Accepts(m, ok), ok);
        foreach (var bad in new[] { "1.255", "10.01", "-0.01", "0.001", "1e2", "-1" }) Assert.False(Accepts(m, bad), bad);

        var positive = Compile("""{"type":"number","multipleOf":0.5,"exclusiveMinimum":0}""", strict: false);   // 0.5 is not 10^-d: the remainder automaton, in either mode
        Assert.True(Accepts(positive, "0.5") && Accepts(positive, "12.5"));
        Assert.False(Accepts(positive, "0.3") || Accepts(positive, "0"));

        var tenths = Compile("""{"type":"number","multipleOf":0.1}""", strict: true);
        foreach (var ok in new[] { "0", "-2.5", "12345.6" }) Assert.True(Accepts(tenths, ok), ok);
        foreach (var bad in new[] { "0.25", "1e1", "-0.05" }) Assert.False(Accepts(tenths, bad), bad);
    }

    [Fact]
    public void Numbers_with_a_whole_step_are_its_integer_multiples()
    {
        var m = Compile("""{"type":"number","multipleOf":5,"exclusiveMinimum":0,"maximum":22.5}""", strict: true);
        foreach (var ok in new[] { "5", "10", "20" }) Assert.True(Accepts(m, ok), ok);
        foreach (var bad in new[] { "0", "25", "2.5", "15.0", "-5" }) Assert.False(Accepts(m, bad), bad);
    }

    [Fact]
    public void A_step_that_leaves_no_value_within_the_bounds_is_named()
    {
        foreach (var strict in new[] { true, false })
            Assert.EndsWith("multipleOf", Assert.Throws<GrammarException>(() => Compile("""{"type":"integer","multipleOf":10,"minimum":11,"maximum":19}""", strict)).Path);
    }
}
