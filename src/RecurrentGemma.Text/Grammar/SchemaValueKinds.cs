using System.Text.Json;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// What the schema compiler needs to keep strict mode's promise — every document it lets the
/// model write is valid against the schema — where one keyword would otherwise decide alone:
/// which enum/const values a sibling <c>type</c> admits, which sibling keywords a composition
/// (<c>$ref</c>, <c>anyOf</c>, <c>oneOf</c>, <c>allOf</c>) or a <c>format</c> would leave
/// unenforced, and whether the branches of a <c>oneOf</c> can never match one value twice (the
/// grammar lets the model take any branch, so oneOf is only exact when no value is valid under
/// two). Shallow by design: what it cannot prove disjoint is refused in strict mode.
/// </summary>
internal static class SchemaValueKinds
{
    /// <summary>The node a local reference ("#", "#/$defs/a", with JSON pointer's ~0 ~1 escapes) names in <paramref name="root"/>.</summary>
    public static bool TryFind(JsonElement root, string target, out JsonElement node)
    {
        node = root;
        if (target == "#") return true;
        if (!target.StartsWith("#/", StringComparison.Ordinal)) return false;
        foreach (var raw in target[2..].Split('/'))
            if (node.ValueKind != JsonValueKind.Object || !node.TryGetProperty(raw.Replace("~1", "/").Replace("~0", "~"), out node)) return false;
        return true;
    }

    /// <summary>The schema a chain of local $refs leads to (itself when it is not one; where a reference points to nothing, the last schema found).</summary>
    public static JsonElement Resolve(JsonElement root, JsonElement s)
    {
        for (int hops = 0; hops < 16 && s.ValueKind == JsonValueKind.Object && s.TryGetProperty("$ref", out var r)
            && r.ValueKind == JsonValueKind.String && TryFind(root, r.GetString()!, out var node); hops++)
            s = node;
        return s;
    }

    /// <summary>The JSON Schema type names a value has ("integer" values are "number"s too).</summary>
    public static IEnumerable<string> TypesOf(JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String: yield return "string"; break;
            case JsonValueKind.True or JsonValueKind.False: yield return "boolean"; break;
            case JsonValueKind.Null: yield return "null"; break;
            case JsonValueKind.Object: yield return "object"; break;
            case JsonValueKind.Array: yield return "array"; break;
            case JsonValueKind.Number:
                yield return "number";
                if (value.TryGetDouble(out double d) && double.IsFinite(d) && Math.Floor(d) == d) yield return "integer";
                break;
        }
    }

    /// <summary>The types a schema's <c>type</c> admits; null when it has none (any).</summary>
    public static HashSet<string>? DeclaredTypes(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object || !schema.TryGetProperty("type", out var type)) return null;
        var set = type.ValueKind switch
        {
            JsonValueKind.String => new HashSet<string> { type.GetString()! },
            JsonValueKind.Array => type.EnumerateArray().Where(t => t.ValueKind == JsonValueKind.String).Select(t => t.GetString()!).ToHashSet(),
            _ => null,
        };
        if (set is not null && set.Contains("number")) set.Add("integer");   // every integer is a number
        return set;
    }

    /// <summary>
    /// The first sibling of <paramref name="keyword"/> that constrains values (a supported keyword
    /// other than those in <paramref name="allowed"/>), or null: in strict mode such a sibling
    /// would go unenforced.
    /// </summary>
    public static string? ConstrainingSibling(JsonElement schema, string keyword, IReadOnlySet<string> supported, params string[] allowed)
    {
        foreach (var p in schema.EnumerateObject())
            if (p.Name != keyword && supported.Contains(p.Name) && !allowed.Contains(p.Name)) return p.Name;
        return null;
    }

    /// <summary>
    /// What a branch can be, shallowly: a set of literal values (const/enum, canonical text), or a
    /// set of types with, for objects, the literal values of each required property (a
    /// discriminator). Null: anything (nothing known).
    /// </summary>
    sealed record Kinds(HashSet<string>? Literals, HashSet<string>? Types, Dictionary<string, HashSet<string>> Discriminators);

    /// <summary>Throws when two branches of a oneOf might both match one value.</summary>
    public static void RequireDisjoint(JsonElement options, Func<JsonElement, JsonElement> resolve, string path)
    {
        var kinds = options.EnumerateArray().Select(o => KindsOf(resolve(o), resolve)).ToList();
        for (int i = 0; i < kinds.Count; i++)
            for (int j = i + 1; j < kinds.Count; j++)
                if (!Disjoint(kinds[i], kinds[j]))
                    throw new GrammarException(
                        $"oneOf branches {i} and {j} may both match one value, and the model may write any branch: in strict mode oneOf needs branches " +
                        "no value satisfies twice (different types, or a required property with different const values); use anyOf otherwise", path);
    }

    static Kinds KindsOf(JsonElement s, Func<JsonElement, JsonElement> resolve)
    {
        if (s.ValueKind != JsonValueKind.Object) return new Kinds(null, null, []);
        if (LiteralsOf(s) is { } literals) return new Kinds(literals, null, []);
        var types = DeclaredTypes(s);
        if (types is null && (s.TryGetProperty("properties", out _) || s.TryGetProperty("additionalProperties", out _))) types = ["object"];
        if (types is null && (s.TryGetProperty("items", out _) || s.TryGetProperty("prefixItems", out _))) types = ["array"];
        var discriminators = new Dictionary<string, HashSet<string>>();
        if (types is { Count: 1 } && types.Contains("object") && s.TryGetProperty("properties", out var props) && props.ValueKind == JsonValueKind.Object
            && s.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array)
            foreach (var name in req.EnumerateArray().Where(r => r.ValueKind == JsonValueKind.String).Select(r => r.GetString()!))
                if (props.TryGetProperty(name, out var p) && LiteralsOf(resolve(p)) is { } values) discriminators[name] = values;
        return new Kinds(null, types, discriminators);
    }

    /// <summary>const or enum values as canonical text (numbers by value), or null.</summary>
    static HashSet<string>? LiteralsOf(JsonElement s)
    {
        if (s.ValueKind != JsonValueKind.Object) return null;
        if (s.TryGetProperty("const", out var c)) return [Canonical(c)];
        if (s.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array) return e.EnumerateArray().Select(Canonical).ToHashSet();
        return null;
    }

    static string Canonical(JsonElement v) => v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d)
        ? "n:" + d.ToString("R", System.Globalization.CultureInfo.InvariantCulture)
        : JsonSerializer.Serialize(v);

    static bool Disjoint(Kinds a, Kinds b)
    {
        if (a.Literals is { } la && b.Literals is { } lb) return !la.Overlaps(lb);
        if (a.Literals is { } l1 && b.Types is { } t1) return LiteralsOutside(l1, t1);
        if (b.Literals is { } l2 && a.Types is { } t2) return LiteralsOutside(l2, t2);
        if (a.Types is null || b.Types is null) return false;
        var shared = a.Types.Intersect(b.Types).ToList();
        if (shared.Count == 0) return true;
        // Two objects differ for sure where one required property has disjoint values in each.
        return shared.SequenceEqual(["object"])
            && a.Discriminators.Any(d => b.Discriminators.TryGetValue(d.Key, out var other) && !d.Value.Overlaps(other));
    }

    /// <summary>True when no literal (canonical text) has one of the types.</summary>
    static bool LiteralsOutside(HashSet<string> literals, HashSet<string> types) =>
        literals.All(l => !TypesOf(JsonDocument.Parse(l.StartsWith("n:", StringComparison.Ordinal) ? l[2..] : l).RootElement).Any(types.Contains));
}
