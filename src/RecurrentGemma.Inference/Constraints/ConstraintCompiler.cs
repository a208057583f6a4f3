using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RecurrentGemma.Text;
using RecurrentGemma.Text.Grammar;

namespace RecurrentGemma.Inference.Constraints;

/// <summary>What the output must be: one JSON object, or a document valid against a schema.</summary>
public sealed record OutputFormat(OutputFormatKind Kind, JsonElement? Schema = null, bool Strict = false);

public enum OutputFormatKind { JsonObject, JsonSchema }

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
        var text = format.Kind == OutputFormatKind.JsonObject ? "json_object" : format.Schema!.Value.GetRawText();
        return Cached($"{format.Kind}:{format.Strict}:{Hash(text)}", () => format.Kind == OutputFormatKind.JsonObject
            ? JsonSchemaCompiler.AnyObject()
            : JsonSchemaCompiler.Compile(format.Schema!.Value, format.Strict, Limits));
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
