using System.Text;
using System.Text.Json;
using RecurrentGemma.Text.Grammar;

namespace RecurrentGemma.Text.Tests;

/// <summary>The matcher's states repeat where the grammar repeats, which is what makes masks cheap.</summary>
public class GrammarStateTests
{
    [Fact]
    public void Inside_a_string_every_character_leads_back_to_the_same_state()
    {
        var m = new GrammarMatcher(JsonSchemaCompiler.Compile(JsonDocument.Parse("""{"type":"object","properties":{"s":{"type":"string"}},"required":["s"]}""").RootElement, false));
        var state = m.Advance(m.Start, "{\"s\":\"a"u8);
        var first = state;
        foreach (var b in "bcdefghij klmnop 日本"u8.ToArray()) state = m.Advance(state, b);
        Assert.Same(first, state);   // right recursion does not grow the stack
        var nested = new GrammarMatcher(JsonSchemaCompiler.AnyObject());
        var deep = nested.Advance(nested.Start, Encoding.UTF8.GetBytes("{\"a\":[[{\"b\":\"x"));
        var deeper = nested.Advance(deep, Encoding.UTF8.GetBytes("yz"));
        Assert.Same(deep, deeper);
    }
}
