using RecurrentGemma.Text.Grammar;
using static RecurrentGemma.Text.Tests.SchemaTesting;

namespace RecurrentGemma.Text.Tests;

/// <summary>uniqueItems over a finite item set: every array of distinct values within the counts, and no other.</summary>
public class UniqueItemsTests
{
    /// <summary>Every array of up to four items drawn from the values (repeats included).</summary>
    static IEnumerable<string[]> Arrays(string[] values)
    {
        IEnumerable<string[]> level = [[]];
        var all = new List<string[]> { Array.Empty<string>() };
        for (int length = 1; length <= 4; length++)
        {
            level = level.SelectMany(a => values.Select(v => (string[])[.. a, v])).ToList();
            all.AddRange(level);
        }
        return all;
    }

    [Theory]
    [InlineData("""{"enum":["red","green","blue"]}""", new[] { "\"red\"", "\"green\"", "\"blue\"" }, null, null)]
    [InlineData("""{"enum":["red","green","blue"]}""", new[] { "\"red\"", "\"green\"", "\"blue\"" }, 1, 2)]
    [InlineData("""{"type":"boolean"}""", new[] { "true", "false" }, null, null)]
    [InlineData("""{"$ref":"#/$defs/Color"}""", new[] { "\"red\"", "\"green\"", "\"blue\"" }, 2, null)]
    [InlineData("""{"type":"integer","enum":[1,2,"x",2]}""", new[] { "1", "2", "\"x\"" }, null, null)]   // "x" is not an integer: never written
    public void Exactly_the_arrays_without_a_repeat_within_the_counts(string items, string[] values, int? min, int? max)
    {
        string counts = (min is { } a ? $",\"minItems\":{a}" : "") + (max is { } b ? $",\"maxItems\":{b}" : "");
        string schema = "{\"$defs\":{\"Color\":{\"enum\":[\"red\",\"green\",\"blue\"]}},\"type\":\"array\",\"items\":" + items + ",\"uniqueItems\":true" + counts + "}";
        var m = Compile(schema, strict: true);
        bool integerOnly = items.Contains("\"integer\"");
        foreach (var array in Arrays(values))
        {
            bool valid = array.Distinct().Count() == array.Length && array.Length >= (min ?? 0) && array.Length <= (max ?? int.MaxValue)
                && (!integerOnly || !array.Contains("\"x\""));
            string text = "[" + string.Join(",", array) + "]";
            Assert.True(valid == Accepts(m, text), $"{schema}: {text} should be {(valid ? "accepted" : "refused")}");
        }
    }

    [Fact]
    public void Other_items_are_refused_in_strict_mode_and_left_unchecked_otherwise()
    {
        const string schema = """{"type":"array","items":{"type":"string","maxLength":3},"uniqueItems":true}""";
        Assert.EndsWith("uniqueItems", Assert.Throws<GrammarException>(() => Compile(schema, strict: true)).Path);
        Assert.True(Accepts(Compile(schema, strict: false), """["a","a"]"""));
        Assert.True(Accepts(Compile("""{"type":"array","items":{"type":"string"},"uniqueItems":false}""", strict: true), """["a","a"]"""));
        Assert.Throws<GrammarException>(() => Compile("""{"type":"array","items":{"type":"boolean"},"uniqueItems":true,"minItems":3}""", strict: false));   // only two distinct values
    }
}
