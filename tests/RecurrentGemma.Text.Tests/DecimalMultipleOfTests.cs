using System.Globalization;
using RecurrentGemma.Text.Grammar;
using static RecurrentGemma.Text.Tests.SchemaTesting;

namespace RecurrentGemma.Text.Tests;

/// <summary>
/// multipleOf with a decimal step that is not 10^−d (0.5, 0.25, 2.5, …; DecimalMultipleGrammar):
/// every number of the grid around zero checked value by value against the bounds, and random
/// walks through the grammar (what a sampler does) always end on a valid multiple.
/// </summary>
public class DecimalMultipleOfTests
{
    static readonly string[] Steps = ["0.5", "0.25", "0.2", "0.05", "2.5", "0.3", "1.5", "0.125", "6.4", "0.75"];

    /// <summary>Bounds as (key, value) pairs written into the schema.</summary>
    static readonly string[] Bounds =
    [
        "", ",\"minimum\":0", ",\"exclusiveMinimum\":0", ",\"maximum\":0", ",\"exclusiveMaximum\":-0.3",
        ",\"minimum\":-7.3,\"maximum\":9.1", ",\"minimum\":2.7", ",\"minimum\":0.6", ",\"minimum\":13", ",\"maximum\":-11.2",
        ",\"exclusiveMinimum\":-1,\"exclusiveMaximum\":1", ",\"minimum\":1.1,\"maximum\":1.2",
    ];

    public static IEnumerable<object[]> Cases() => Steps.SelectMany(s => Bounds.Select(b => new object[] { s, b }));

    static (decimal? Lo, bool LoIn, decimal? Hi, bool HiIn) Parse(string bounds)
    {
        using var doc = System.Text.Json.JsonDocument.Parse("{" + bounds.TrimStart(',') + "}");
        (decimal? lo, bool loIn, decimal? hi, bool hiIn) = (null, true, null, true);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            decimal v = p.Value.GetDecimal();
            switch (p.Name)
            {
                case "minimum": lo = v; break;
                case "exclusiveMinimum": (lo, loIn) = (v, false); break;
                case "maximum": hi = v; break;
                case "exclusiveMaximum": (hi, hiIn) = (v, false); break;
            }
        }
        return (lo, loIn, hi, hiIn);
    }

    static string Show(decimal x) => x == 0 ? "0" : x.ToString("0.##########", CultureInfo.InvariantCulture);

    [Theory, MemberData(nameof(Cases))]
    public void Numbers_are_exactly_the_multiples_within_the_bounds(string step, string bounds)
    {
        decimal m = decimal.Parse(step, CultureInfo.InvariantCulture);
        var (lo, loIn, hi, hiIn) = Parse(bounds);
        bool Within(decimal x) => (lo is null || (loIn ? x >= lo : x > lo)) && (hi is null || (hiIn ? x <= hi : x < hi));
        var schema = $$"""{"type":"number","multipleOf":{{step}}{{bounds}}}""";
        int d = step.Length - step.IndexOf('.') - 1;
        decimal unit = 1m / (decimal)Math.Pow(10, d);
        // The grid of numbers with at most d fraction digits around zero, then one digit finer.
        var grid = Enumerable.Range(-4000, 8001).Select(i => i * unit).ToList();
        if (!grid.Any(x => x % m == 0 && Within(x)) && lo is not null && hi is not null)
        {
            Assert.EndsWith("multipleOf", Assert.Throws<GrammarException>(() => Compile(schema, strict: true)).Path);
            return;
        }
        var matcher = Compile(schema, strict: true);
        foreach (decimal x in grid)
        {
            bool valid = x % m == 0 && Within(x);
            Assert.True(valid == Accepts(matcher, Show(x)), $"{schema}: {Show(x)} should be {(valid ? "accepted" : "refused")}");
            // Other spellings of the same value (fraction zeros) may or may not be written, but never an invalid value.
            var padded = x.ToString("0." + new string('0', d), CultureInfo.InvariantCulture);
            Assert.False(!valid && Accepts(matcher, padded), $"{schema}: {padded} accepted");
            Assert.False(Accepts(matcher, Show(x + unit / 2)), $"{schema}: {Show(x + unit / 2)} accepted");   // more fraction digits than any multiple has
        }
        foreach (var far in new[] { 123_456_789m * m, -98_765_431m * m, 999_999_999_999_999m, 1_000_000_000_000_000m })
        {
            bool valid = far % m == 0 && Within(far) && Math.Abs(far) < 1e15m;
            Assert.True(valid == Accepts(matcher, Show(far)), $"{schema}: {Show(far)} should be {(valid ? "accepted" : "refused")}");
        }
        Assert.False(Accepts(matcher, "-0"));
        Assert.False(Accepts(matcher, "1e1"));

        // Walks as a sampler takes them: each byte one that keeps the match alive, ending at random where it may.
        var rng = new Random(step.GetHashCode() ^ bounds.Length);
        byte[] alphabet = "-.0123456789"u8.ToArray();
        for (int walk = 0; walk < 200; walk++)
        {
            var state = matcher.Start;
            var text = new System.Text.StringBuilder();
            while (true)
            {
                var next = alphabet.Select(b => (b, s: matcher.Advance(state, b))).Where(t => !t.s.IsDead).ToList();
                Assert.True(next.Count > 0 || state.Complete, $"{schema}: dead end after \"{text}\"");
                if (state.Complete && (next.Count == 0 || rng.Next(4) == 0)) break;
                var (b, s) = next[rng.Next(next.Count)];
                text.Append((char)b);
                state = s;
            }
            decimal value = decimal.Parse(text.ToString(), NumberStyles.Float, CultureInfo.InvariantCulture);
            Assert.True(value % m == 0 && Within(value), $"{schema}: the walk wrote {text}");
        }
    }

    [Theory]
    [InlineData("""{"type":"number","multipleOf":0.5,"minimum":0,"maximum":100000}""")]   // 200k multiples on a bounded side
    [InlineData("""{"type":"number","multipleOf":12.9}""")]                              // 129 over 128
    [InlineData("""{"type":"number","multipleOf":0.0000000000005}""")]                   // 13 fraction digits
    public void What_is_not_supported_is_refused_in_strict_mode_and_left_out_otherwise(string schema)
    {
        Assert.Contains("multipleOf", Assert.Throws<GrammarException>(() => Compile(schema, strict: true)).Path);
        Assert.True(Accepts(Compile(schema, strict: false), "0.3"));
    }

    [Fact]
    public void Steps_are_read_as_decimals()
    {
        Assert.Equal((5, 1), DecimalMultipleGrammar.Step(0.5m));
        Assert.Equal((25, 2), DecimalMultipleGrammar.Step(0.25m));
        Assert.Equal((25, 1), DecimalMultipleGrammar.Step(2.5m));
        Assert.Equal((64, 1), DecimalMultipleGrammar.Step(6.4m));
        Assert.Null(DecimalMultipleGrammar.Step(0.1m));   // 10^−d: a count of fraction digits does it
        Assert.Null(DecimalMultipleGrammar.Step(3m));     // whole: the integer multiples
        Assert.Equal((125, 3), DecimalMultipleGrammar.Step(0.125m));
        Assert.Null(DecimalMultipleGrammar.Step(12.9m));  // 129 > 128
    }
}
