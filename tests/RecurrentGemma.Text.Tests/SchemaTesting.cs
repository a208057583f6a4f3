using System.Text;
using System.Text.Json;
using RecurrentGemma.Text.Grammar;

namespace RecurrentGemma.Text.Tests;

/// <summary>A schema compiled to a matcher, and whether a whole text is a sentence of it.</summary>
static class SchemaTesting
{
    public static GrammarMatcher Compile(string schema, bool strict) => new(JsonSchemaCompiler.Compile(JsonDocument.Parse(schema).RootElement, strict));

    public static bool Accepts(GrammarMatcher m, string text) => m.Accepts(Encoding.UTF8.GetBytes(text));
}
