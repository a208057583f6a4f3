using System.Text.Json;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// The grammar of a tool-calling answer (<see cref="ToolFormat"/>): one call, or several separated
/// by newlines when parallel calls are allowed, each naming an offered function and giving
/// arguments valid against its parameters schema; with tool_choice auto, plain text instead.
/// A function without parameters takes <c>{}</c>.
/// </summary>
public static class ToolCallGrammar
{
    /// <summary>Most calls in one answer.</summary>
    public const int MaxParallelCalls = 8;

    /// <param name="path">Where each function's schema sits in the request, for errors: "tools[i].function.parameters".</param>
    public static ByteGrammar Build(ToolPrompt prompt, SchemaLimits? limits = null, Func<int, string>? path = null)
    {
        var g = new ByteGrammar();
        var calls = new List<int>();
        for (int i = 0; i < prompt.Tools.Count; i++)
        {
            var tool = prompt.Tools[i];
            if (prompt.Only is { } only && tool.Name != only) continue;
            int args;
            try
            {
                args = tool.Parameters is { ValueKind: JsonValueKind.Object } p && p.EnumerateObject().Any()
                    ? JsonSchemaCompiler.CompileInto(g, p, tool.Strict, limits)
                    : g.Literal("{}");
            }
            catch (GrammarException e)
            {
                var at = path?.Invoke(i) ?? $"tools[{i}].function.parameters";
                throw new GrammarException(e.Message, e.Path.Length == 0 ? at : $"{at}.{e.Path}");
            }
            var head = ToolFormat.CallOpen + "{\"name\":" + JsonSerializer.Serialize(tool.Name) + ",\"arguments\":";
            calls.Add(g.Seq(g.Literal(head), args, g.Literal("}" + ToolFormat.CallClose)));
        }
        if (calls.Count == 0) throw new GrammarException("no offered function matches tool_choice", "tool_choice");
        int call = g.Choice([.. calls]);
        int answer = prompt.Parallel ? g.Repeat(call, 1, MaxParallelCalls, g.Literal(ToolFormat.CallSeparator)) : call;
        g.Root = prompt.Required || prompt.Only is not null ? answer : g.Choice(answer, AnyText(g));
        return g;
    }

    /// <summary>Any valid UTF-8 text (the auto mode's plain answer).</summary>
    static int AnyText(ByteGrammar g) => g.Star(JsonGrammar.Utf8Char(g, ByteSet.Range(0x00, 0x7F)));
}
