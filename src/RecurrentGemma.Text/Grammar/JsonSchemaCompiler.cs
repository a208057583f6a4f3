using System.Text.Json;

namespace RecurrentGemma.Text.Grammar;

/// <summary>Limits on what a schema may compile to.</summary>
public sealed record SchemaLimits
{
    public int MaxRules { get; init; } = 20_000;
    public int MaxDepth { get; init; } = 32;
    /// <summary>Largest minLength/maxLength/minItems/maxItems that is unrolled.</summary>
    public int MaxRepeat { get; init; } = 1000;
}

/// <summary>
/// Compiles a JSON Schema into a <see cref="ByteGrammar"/> whose sentences are exactly compact
/// JSON documents valid against it (a subset of them where noted). Supported: type (and type
/// arrays), properties (emitted in schema order; required ones always, optional ones may be left
/// out), required, additionalProperties (only the listed properties are written; with none listed
/// and additionalProperties not false, any members), minProperties/maxProperties, items, uniqueItems
/// over a small finite item set (<see cref="UniqueItemsGrammar"/>), prefixItems, minItems/maxItems, enum,
/// const, anyOf, oneOf (as anyOf), allOf with one member or of object schemas (<see cref="AllOfMerge"/>), $ref to #/$defs/… or #/definitions/…
/// (recursion included), minLength/maxLength, format (date, time, date-time, uuid, email, uri, ipv4, hostname),
/// minimum/maximum (also exclusive) for integers and numbers, and multipleOf (<see cref="MultipleOfGrammar"/>;
/// on numbers also 0.1, 0.01, …: that many fraction digits at most; other decimal steps such as 0.5 or 0.25:
/// <see cref="DecimalMultipleGrammar"/>). Annotations (title, description, default,
/// examples…) are ignored. Any other keyword: with strict, a <see cref="GrammarException"/>
/// naming it and its path; without, ignored. Strict also refuses a constraint that a deciding
/// keyword ($ref, a composition, const/enum, format) would leave unenforced, and a oneOf whose
/// branches could match one value twice (<see cref="SchemaValueKinds"/>). A schema with no finite
/// document is refused in any mode, and branches with no way out are pruned
/// (<see cref="ByteGrammar.PruneUnproductive"/>).
/// </summary>
public sealed partial class JsonSchemaCompiler
{
    static readonly HashSet<string> Annotations =
    [
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly",
        "$defs", "definitions", "strict", "name", "contentMediaType", "contentEncoding",
    ];

    static readonly HashSet<string> Supported =
    [
        "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "enum", "const",
        "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "pattern", "minProperties", "maxProperties", "multipleOf", "uniqueItems",
    ];

    readonly ByteGrammar _g;
    readonly JsonGrammar _json;
    readonly JsonElement _root;
    readonly bool _strict;
    readonly SchemaLimits _limits;
    readonly Dictionary<string, int> _refs = [];

    JsonSchemaCompiler(ByteGrammar g, JsonElement root, bool strict, SchemaLimits limits)
    {
        _g = g;
        _json = new JsonGrammar(_g);
        _root = root;
        _strict = strict;
        _limits = limits;
    }

    public static ByteGrammar Compile(JsonElement schema, bool strict, SchemaLimits? limits = null)
    {
        var g = new ByteGrammar();
        g.Root = CompileInto(g, schema, strict, limits);
        return g;
    }

    /// <summary>Adds the schema's rules to an existing grammar (a tool's arguments inside the
    /// call format) and returns the rule for one valid document.</summary>
    public static int CompileInto(ByteGrammar g, JsonElement schema, bool strict, SchemaLimits? limits = null)
    {
        int rule = new JsonSchemaCompiler(g, schema, strict, limits ?? new SchemaLimits()).Schema(schema, "", 0);
        // A recursion with no way out ({"$ref":"#"}, a required property referring back to its own
        // object) has no finite document: refused here rather than generated until max_tokens.
        if (!g.PruneUnproductive(rule))
            throw new GrammarException("no finite JSON document satisfies it: every one would nest forever through a $ref that has no way out", "");
        return rule;
    }

    /// <summary>Any JSON object (response_format json_object).</summary>
    public static ByteGrammar AnyObject()
    {
        var g = new ByteGrammar();
        g.Root = new JsonGrammar(g).AnyObject();
        return g;
    }

    int Schema(JsonElement s, string path, int depth)
    {
        if (depth > _limits.MaxDepth) throw new GrammarException($"the schema nests deeper than {_limits.MaxDepth} levels", path);
        if (_g.RuleCount > _limits.MaxRules) throw new GrammarException($"the schema is too large (over {_limits.MaxRules} grammar rules)", path);
        if (s.ValueKind == JsonValueKind.True) return _json.Value;
        if (s.ValueKind == JsonValueKind.False) throw new GrammarException("a schema of false accepts nothing", path);
        if (s.ValueKind != JsonValueKind.Object) throw new GrammarException("a schema must be an object or a boolean", path);

        foreach (var p in s.EnumerateObject())
            if (!Supported.Contains(p.Name) && !Annotations.Contains(p.Name) && _strict)
                throw new GrammarException($"the keyword '{p.Name}' is not supported in strict mode", Join(path, p.Name));

        // One keyword decides below ($ref, const, enum, a composition); in strict mode a sibling
        // that constrains values would go unenforced, so it is refused rather than ignored.
        if (s.TryGetProperty("$ref", out var reference))
        {
            RefuseSiblings(s, "$ref", path);
            return Ref(reference, Join(path, "$ref"), depth);
        }
        if (s.TryGetProperty("const", out var constant)) return Literals(s, "const", [constant], path);
        if (s.TryGetProperty("enum", out var values))
        {
            if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0)
                throw new GrammarException("enum must be a non-empty array", Join(path, "enum"));
            return Literals(s, "enum", [.. values.EnumerateArray()], path);
        }
        foreach (var key in new[] { "anyOf", "oneOf" })
            if (s.TryGetProperty(key, out var options))
            {
                if (options.ValueKind != JsonValueKind.Array || options.GetArrayLength() == 0)
                    throw new GrammarException($"{key} must be a non-empty array", Join(path, key));
                RefuseSiblings(s, key, path);
                if (key == "oneOf" && _strict) SchemaValueKinds.RequireDisjoint(options, o => SchemaValueKinds.Resolve(_root, o), Join(path, key));
                return _g.Choice(options.EnumerateArray().Select((o, i) => Schema(o, $"{Join(path, key)}[{i}]", depth + 1)).ToArray());
            }
        if (s.TryGetProperty("allOf", out var all))
        {
            // Several members, or one beside the parent's own keywords: object schemas merge.
            bool beside = s.EnumerateObject().Any(p => p.Name != "allOf" && !Annotations.Contains(p.Name));
            string? why = "allOf must be a non-empty array";
            int members = all.ValueKind == JsonValueKind.Array ? all.GetArrayLength() : 0;
            if (members > 0 && (beside || members > 1) && AllOfMerge.TryMerge(s, all, _root, Annotations, Join(path, "allOf"), out why) is { } merged)
                return Schema(merged, Join(path, "allOf"), depth + 1);
            if (members == 1)
            {
                RefuseSiblings(s, "allOf", path);   // strict names a sibling that would go unenforced
                return Schema(all[0], Join(path, "allOf") + "[0]", depth + 1);
            }
            if (_strict) throw new GrammarException($"allOf is supported with one member, or with object members that merge: {why}", Join(path, "allOf"));
        }

        if (!s.TryGetProperty("type", out var type)) return Untyped(s, path, depth);
        if (type.ValueKind == JsonValueKind.String) return Typed(type.GetString()!, s, path, depth);
        if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0)
            return _g.Choice(type.EnumerateArray().Select(t => t.ValueKind == JsonValueKind.String
                ? Typed(t.GetString()!, s, path, depth)
                : throw new GrammarException("type must be a string or an array of strings", Join(path, "type"))).ToArray());
        throw new GrammarException("type must be a string or an array of strings", Join(path, "type"));
    }

    /// <summary>No type: guess from the keywords present, else any value.</summary>
    int Untyped(JsonElement s, string path, int depth)
    {
        if (s.TryGetProperty("properties", out _) || s.TryGetProperty("additionalProperties", out _)) return Typed("object", s, path, depth);
        if (s.TryGetProperty("items", out _) || s.TryGetProperty("prefixItems", out _)) return Typed("array", s, path, depth);
        return _json.Value;
    }

    int Typed(string type, JsonElement s, string path, int depth) => type switch
    {
        "object" => Object(s, path, depth),
        "array" => Array(s, path, depth),
        "string" => String(s, path),
        "integer" => Integer(s, path),
        "number" => Number(s, path),
        "boolean" => _g.Choice(_g.Literal("true"), _g.Literal("false")),
        "null" => _g.Literal("null"),
        _ => throw new GrammarException($"unknown type '{type}'", Join(path, "type")),
    };

    int Object(JsonElement s, string path, int depth)
    {
        var required = s.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array
            ? req.EnumerateArray().Where(r => r.ValueKind == JsonValueKind.String).Select(r => r.GetString()!).ToHashSet()
            : [];
        var props = new List<(string Name, bool Required, int Rule)>();
        if (s.TryGetProperty("properties", out var properties))
        {
            if (properties.ValueKind != JsonValueKind.Object) throw new GrammarException("properties must be an object", Join(path, "properties"));
            foreach (var p in properties.EnumerateObject())
            {
                int value = Schema(p.Value, Join(Join(path, "properties"), p.Name), depth + 1);
                int member = _g.Seq(Literal(JsonSerializer.SerializeToElement(p.Name)), _g.Byte((byte)':'), value);
                props.Add((p.Name, required.Contains(p.Name), member));
            }
        }
        foreach (var r in required)
            if (!props.Any(p => p.Name == r))
                throw new GrammarException($"'{r}' is required but not among the properties", Join(path, "required"));

        bool closed = s.TryGetProperty("additionalProperties", out var extra) && extra.ValueKind == JsonValueKind.False;
        int least = Count(s, "minProperties", path) ?? 0;
        int? most = Count(s, "maxProperties", path, unrolled: false);
        if (most < least) throw new GrammarException("maxProperties is smaller than minProperties", Join(path, "maxProperties"));
        if (props.Count == 0 && !closed)
        {
            // No listed properties: any members, their values as additionalProperties says.
            int value = extra.ValueKind is JsonValueKind.Object ? Schema(extra, Join(path, "additionalProperties"), depth + 1) : _json.Value;
            int member = _g.Seq(_json.String(), _g.Byte((byte)':'), value);
            return _g.Seq(_g.Byte((byte)'{'), _g.Repeat(member, least, most, _g.Byte((byte)',')), _g.Byte((byte)'}'));
        }
        // Only the listed properties are written, so the counts must fit them.
        int requiredCount = props.Count(p => p.Required);
        if (most < requiredCount)
            throw new GrammarException($"maxProperties ({most}) is smaller than the {requiredCount} required properties", Join(path, "maxProperties"));
        if (least > props.Count)
            throw new GrammarException($"minProperties ({least}) needs more properties than the {props.Count} listed (only listed properties are written)", Join(path, "minProperties"));
        // Members in schema order; each optional one may be skipped. Tail(i, written) is the rest
        // from property i with `written` members so far (none yet: no comma before the next). An
        // optional member is written only if the required ones after it still fit under
        // maxProperties, and skipped only if enough properties remain to reach minProperties, so
        // every path can end.
        var requiredAfter = new int[props.Count + 1];
        for (int i = props.Count - 1; i >= 0; i--) requiredAfter[i] = requiredAfter[i + 1] + (props[i].Required ? 1 : 0);
        var memo = new Dictionary<(int, int), int>();
        int comma = _g.Byte((byte)',');
        int Tail(int i, int written)
        {
            // Without maxProperties only "none yet" and "minProperties reached" matter: one rule
            // per property for the usual schema, not one per count.
            if (most is null) written = Math.Min(written, Math.Max(least, 1));
            if (i == props.Count) return _g.Empty();
            if (memo.TryGetValue((i, written), out var known)) return known;
            var (_, isRequired, member) = props[i];
            int write = written == 0 ? _g.Seq(member, Tail(i + 1, 1)) : _g.Seq(comma, member, Tail(i + 1, written + 1));
            bool mayWrite = most is null || written + 1 + requiredAfter[i + 1] <= most;
            bool maySkip = written + (props.Count - i - 1) >= least;
            int rule = isRequired || !maySkip ? write : mayWrite ? _g.Choice(write, Tail(i + 1, written)) : Tail(i + 1, written);
            memo[(i, written)] = rule;
            return rule;
        }
        return _g.Seq(_g.Byte((byte)'{'), Tail(0, 0), _g.Byte((byte)'}'));
    }

    int Array(JsonElement s, string path, int depth)
    {
        int min = Count(s, "minItems", path) ?? 0;
        int? max = Count(s, "maxItems", path);
        if (s.TryGetProperty("uniqueItems", out var unique) && unique.ValueKind == JsonValueKind.True)
        {
            if (!s.TryGetProperty("prefixItems", out _) && s.TryGetProperty("items", out var itemSchema) && UniqueItemsGrammar.Values(_root, itemSchema) is { } values)
            {
                try { return UniqueItemsGrammar.Arrays(_g, values, min, max); }
                catch (GrammarException e) { throw new GrammarException(e.Message, Join(path, "minItems")); }
            }
            if (_strict)
                throw new GrammarException($"uniqueItems is supported in strict mode only over items of at most {UniqueItemsGrammar.MaxValues} values (an enum, a const, booleans)", Join(path, "uniqueItems"));
        }
        var prefix = new List<int>();
        if (s.TryGetProperty("prefixItems", out var pre) && pre.ValueKind == JsonValueKind.Array)
            prefix.AddRange(pre.EnumerateArray().Select((p, i) => Schema(p, $"{Join(path, "prefixItems")}[{i}]", depth + 1)));
        int item = s.TryGetProperty("items", out var items) && items.ValueKind != JsonValueKind.Undefined
            ? items.ValueKind == JsonValueKind.False ? -1 : Schema(items, Join(path, "items"), depth + 1)
            : _json.Value;
        int comma = _g.Byte((byte)',');
        if (prefix.Count == 0)
        {
            if (item < 0) return _g.Literal("[]");
            return _g.Seq(_g.Byte((byte)'['), _g.Repeat(item, min, max, comma), _g.Byte((byte)']'));
        }
        // prefixItems: the first items in order (all of them: a subset of valid arrays), then more of `items`.
        var seq = new List<int> { _g.Byte((byte)'[') };
        for (int i = 0; i < prefix.Count; i++) { if (i > 0) seq.Add(comma); seq.Add(prefix[i]); }
        if (max is { } m && m < prefix.Count) throw new GrammarException("maxItems is smaller than the number of prefixItems", Join(path, "maxItems"));
        if (item >= 0 && max != prefix.Count)
            seq.Add(_g.Repeat(_g.Seq(comma, item), Math.Max(0, min - prefix.Count), max is null ? null : max - prefix.Count));
        else if (min > prefix.Count) throw new GrammarException("minItems needs more items than prefixItems allows", Join(path, "minItems"));
        seq.Add(_g.Byte((byte)']'));
        return _g.Seq([.. seq]);
    }

    int Ref(JsonElement reference, string path, int depth)
    {
        var target = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : throw new GrammarException("$ref must be a string", path);
        if (_refs.TryGetValue(target, out var rule)) return rule;   // recursion: the rule is declared before it is defined
        if (target != "#" && !target.StartsWith("#/", StringComparison.Ordinal))
            throw new GrammarException($"only local references (#/$defs/…) are supported, not '{target}'", path);
        if (!SchemaValueKinds.TryFind(_root, target, out var node)) throw new GrammarException($"the reference '{target}' points to nothing", path);
        rule = _g.Declare();
        _refs[target] = rule;
        int body = Schema(node, target, depth + 1);
        _g.Define(rule, [body]);
        return rule;
    }

    /// <summary>A JSON value written compactly, as a literal.</summary>
    int Literal(JsonElement value) => _g.Literal(JsonSerializer.SerializeToUtf8Bytes(value));

    /// <summary>
    /// const or enum: the values a sibling type admits (in any mode: a value of another type is
    /// never valid), and in strict mode no other constraining sibling (it would not be checked).
    /// </summary>
    int Literals(JsonElement s, string key, JsonElement[] values, string path)
    {
        if (_strict && SchemaValueKinds.ConstrainingSibling(s, key, Supported, "type") is { } other)
            throw new GrammarException($"'{other}' beside {key} is not supported in strict mode: only the {key} values would be enforced", Join(path, other));
        if (SchemaValueKinds.DeclaredTypes(s) is { } types)
        {
            values = [.. values.Where(v => SchemaValueKinds.TypesOf(v).Any(types.Contains))];
            if (values.Length == 0) throw new GrammarException($"no {key} value has the type the schema names", Join(path, key));
        }
        return _g.Choice([.. values.Select(Literal)]);
    }

    /// <summary>In strict mode, a keyword that decides alone may not have constraining siblings.</summary>
    void RefuseSiblings(JsonElement s, string key, string path)
    {
        if (_strict && SchemaValueKinds.ConstrainingSibling(s, key, Supported) is { } other)
            throw new GrammarException($"'{other}' beside {key} is not supported in strict mode: move it into the {key} target", Join(path, other));
    }



    static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";
}
