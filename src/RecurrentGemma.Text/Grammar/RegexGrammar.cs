namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// Raw text matching a regular expression, whole (vLLM's regex outputs): the pattern subset that
/// JSON Schema patterns take (<see cref="PatternGrammar"/>), with characters as themselves.
/// </summary>
public static class RegexGrammar
{
    /// <summary>The grammar; a <see cref="GrammarException"/> for a pattern outside the subset or one no text matches.</summary>
    public static ByteGrammar Compile(string pattern, SchemaLimits? limits = null)
    {
        var g = new ByteGrammar();
        g.Root = PatternGrammar.CompileRaw(g, pattern, (limits ?? new SchemaLimits()).MaxRepeat);
        if (!g.PruneUnproductive(g.Root)) throw new GrammarException($"no text matches /{pattern}/", "");
        return g;
    }
}
