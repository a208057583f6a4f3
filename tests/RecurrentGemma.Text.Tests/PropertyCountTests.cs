using System.Text.Json;
using RecurrentGemma.Text.Grammar;
using static RecurrentGemma.Text.Tests.SchemaTesting;

namespace RecurrentGemma.Text.Tests;

/// <summary>
/// minProperties/maxProperties: checked against every subset of listed properties (only listed
/// ones are written, in schema order), and on maps (additionalProperties with no listed ones).
/// </summary>
public class PropertyCountTests
{
    public static IEnumerable<object?[]> Cases()
    {
        foreach (var required in new[] { "", "a", "c", "ae", "bd", "abcde" })
            foreach (var (min, max) in new (int?, int?)[] { (null, null), (2, null), (null, 2), (1, 3), (3, 3), (0, 5), (4, null), (null, 0) })
                yield return [required, min, max];
    }

    [Theory, MemberData(nameof(Cases))]
    public void Exactly_the_subsets_within_the_counts_are_written(string required, int? min, int? max)
    {
        const string names = "abcde";
        var schema = new Dictionary<string, object>
        {
            ["type"] = "object",
            ["properties"] = names.ToDictionary(c => c.ToString(), _ => (object)new { @const = 1 }),
            ["required"] = required.Select(c => c.ToString()).ToArray(),
            ["additionalProperties"] = false,
        };
        if (min is { } least) schema["minProperties"] = least;
        if (max is { } most) schema["maxProperties"] = most;
        string json = JsonSerializer.Serialize(schema);
        bool possible = (max ?? 5) >= required.Length && (min ?? 0) <= (max ?? 5);
        if (!possible)
        {
            Assert.Throws<GrammarException>(() => Compile(json, strict: true));
            return;
        }
        foreach (var strict in new[] { true, false })
        {
            var m = Compile(json, strict);
            for (int subset = 0; subset < 32; subset++)
            {
                var written = names.Where((_, i) => (subset >> i & 1) != 0).ToList();
                string doc = "{" + string.Join(",", written.Select(c => $"\"{c}\":1")) + "}";
                bool valid = required.All(written.Contains) && written.Count >= (min ?? 0) && written.Count <= (max ?? 5);
                Assert.True(valid == Accepts(m, doc), $"{json} strict={strict}: {doc} should be {(valid ? "accepted" : "refused")}");
            }
        }
    }

    [Fact]
    public void A_map_takes_between_min_and_max_members()
    {
        var m = Compile("""{"type":"object","additionalProperties":{"type":"integer"},"minProperties":2,"maxProperties":3}""", strict: false);
        Assert.False(Accepts(m, "{}"));
        Assert.False(Accepts(m, """{"a":1}"""));
        Assert.True(Accepts(m, """{"a":1,"b":2}"""));
        Assert.True(Accepts(m, """{"a":1,"b":2,"c":3}"""));
        Assert.False(Accepts(m, """{"a":1,"b":2,"c":3,"d":4}"""));
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{},"b":{}},"required":["a","b"],"maxProperties":1}""", "maxProperties")]
    [InlineData("""{"type":"object","properties":{"a":{},"b":{}},"minProperties":3}""", "minProperties")]
    [InlineData("""{"type":"object","minProperties":3,"maxProperties":2}""", "maxProperties")]
    [InlineData("""{"type":"object","minProperties":-1}""", "minProperties")]
    public void Counts_no_document_can_meet_are_named(string schema, string keyword)
    {
        foreach (var strict in new[] { true, false })
            Assert.EndsWith(keyword, Assert.Throws<GrammarException>(() => Compile(schema, strict)).Path);
    }
}
