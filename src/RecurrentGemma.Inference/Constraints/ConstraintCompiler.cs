using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RecurrentGemma.Text;
using RecurrentGemma.Text.Grammar;

namespace RecurrentGemma.Inference.Constraints;

/// <summary>
/// What the output must be: one JSON object, a document valid against a schema, exactly one of
/// some strings or raw text matching a regular expression (vLLM's choice and regex).
/// <paramref name="Param"/>: where the request gave it, for errors (null: response_format's json_schema).
/// </summary>
public sealed record OutputFormat(OutputFormatKind Kind, JsonElement? Schema = null, bool Strict = false, IReadOnlyList<string>? Choices = null, string? Param = null, string? Pattern = null);

public enum OutputFormatKind { JsonObject, JsonSchema, Choice, Regex }

/// <summary>
/// Compiles output formats to grammar matchers, once per distinct schema: an LRU cache keyed by a
/// hash of the schema's text and its strictness. A matcher is shared by every request using the
/// schema (it is thread-safe and its state caches then serve them all).
/// </summary>
public sealed class ConstraintCompiler(int capacity = 64)
{
    readonly LinkedList<(string Key, GrammarMatcher Matcher)> _order = new();
    readonly Dictionary<string, LinkedListNode<(string Key, GrammarMatcher Matcher)>> _map = [];
    readonly object _gate = new();

    public SchemaLimits Limits { get; init; } = new();

    /// <summary>The matcher for a format; a <see cref="GrammarException"/> if the schema cannot be compiled.</summary>
    public GrammarMatcher Matcher(OutputFormat format)
    {
        var text = format.Kind switch
        {
            OutputFormatKind.JsonObject => "json_object",
            OutputFormatKind.Choice => string.Join("\0", format.Choices!),
            OutputFormatKind.Regex => format.Pattern!,
            _ => format.Schema!.Value.GetRawText(),
        };
        return Cached($"{format.Kind}:{format.Strict}:{Hash(text)}", () => format.Kind switch
        {
            OutputFormatKind.JsonObject => JsonSchemaCompiler.AnyObject(),
            OutputFormatKind.Choice => Choice(format.Choices!),
            OutputFormatKind.Regex => RegexGrammar.Compile(format.Pattern!, Limits),
            _ => JsonSchemaCompiler.Compile(format.Schema!.Value, format.Strict, Limits),
        });
    }

    /// <summary>Exactly one of the strings, as written (raw text, not JSON).</summary>
    static ByteGrammar Choice(IReadOnlyList<string> choices)
    {
        var g = new ByteGrammar();
        g.Root = g.Choice([.. choices.Distinct(StringComparer.Ordinal).Select(g.Literal)]);
        return g;
    }

    /// <summary>The matcher for a tool-calling answer (<see cref="ToolCallGrammar"/>).</summary>
    public GrammarMatcher Matcher(ToolPrompt tools)
    {
        var text = string.Join("\n", tools.Tools.Select(t => $"{t.Name}|{t.Strict}|{t.Parameters?.GetRawText()}"));
        return Cached($"tools:{tools.Required}:{tools.Only}:{tools.Parallel}:{Hash(text)}", () => ToolCallGrammar.Build(tools, Limits));
    }

    static string Hash(string text) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    GrammarMatcher Cached(string key, Func<ByteGrammar> build)
    {
        lock (_gate)
        {
            if (_map.TryGetValue(key, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                return node.Value.Matcher;
            }
        }
        var matcher = new GrammarMatcher(build());
        lock (_gate)
        {
            if (!_map.ContainsKey(key))
            {
                _map[key] = _order.AddFirst((key, matcher));
                while (_map.Count > capacity) { _map.Remove(_order.Last!.Value.Key); _order.RemoveLast(); }
            }
        }
        return matcher;
    }

    /// <summary>A fresh constraint for one request.</summary>
    internal GrammarConstraint Constraint(OutputFormat format, GemmaTokenizer tokenizer, IReadOnlyCollection<int> stopIds) =>
        new(Matcher(format), TokenIndex.For(tokenizer), stopIds);

    internal GrammarConstraint Constraint(ToolPrompt tools, GemmaTokenizer tokenizer, IReadOnlyCollection<int> stopIds) =>
        new(Matcher(tools), TokenIndex.For(tokenizer), stopIds);
}
