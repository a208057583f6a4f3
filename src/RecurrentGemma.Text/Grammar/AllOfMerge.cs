using System.Text.Json;
using System.Text.Json.Nodes;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// allOf of object schemas — inheritance as schema generators write it ({"allOf": [{"$ref":
/// "#/$defs/Base"}, {"properties": …}]}) — merged into one object schema, the parent's own
/// properties counting as one more member. A document must satisfy every member, and only listed
/// properties are written, so: the properties are the members' in order of first appearance; a
/// member closed by additionalProperties: false allows only its own, so the written ones are those
/// every closed member lists; required is the union (a required property some closed member does
/// not list leaves no valid document). A property listed by several members must have the same
/// schema in each. Anything else — a member that is not a plain object schema, differing schemas
/// for one property — is not merged (null, with the reason).
/// </summary>
internal static class AllOfMerge
{
    static readonly HashSet<string> ObjectKeywords = ["type", "properties", "required", "additionalProperties"];

    /// <param name="path">Where allOf is, for an error that no document can satisfy the members.</param>
    public static JsonElement? TryMerge(JsonElement parent, JsonElement members, JsonElement root, HashSet<string> annotations, string path, out string? why)
    {
        why = null;
        var parts = members.EnumerateArray().Select(m => SchemaValueKinds.Resolve(root, m)).ToList();
        // The parent's own keywords apply too (allOf beside properties, or beside a type).
        if (parent.EnumerateObject().Any(p => p.Name != "allOf" && !annotations.Contains(p.Name))) parts.Add(parent);
        var properties = new List<(string Name, JsonElement Schema)>();
        var required = new HashSet<string>();
        HashSet<string>? allowed = null;   // null: no closed member
        foreach (var (part, index) in parts.Select((p, i) => (p, i)))
        {
            bool isParent = index >= members.GetArrayLength();
            if (part.ValueKind != JsonValueKind.Object) { why = "a member is not a schema object"; return null; }
            foreach (var p in part.EnumerateObject())
            {
                if (annotations.Contains(p.Name) || ObjectKeywords.Contains(p.Name)) continue;
                if (isParent && p.Name == "allOf") continue;
                why = $"a member has '{p.Name}' (only object members with properties, required and additionalProperties are merged)";
                return null;
            }
            if (part.TryGetProperty("type", out var type) && !(type.ValueKind == JsonValueKind.String && type.GetString() == "object"))
            { why = "a member is not of type object"; return null; }
            var own = new HashSet<string>();
            if (part.TryGetProperty("properties", out var props))
            {
                if (props.ValueKind != JsonValueKind.Object) { why = "properties must be an object"; return null; }
                foreach (var p in props.EnumerateObject())
                {
                    own.Add(p.Name);
                    int at = properties.FindIndex(x => x.Name == p.Name);
                    if (at < 0) properties.Add((p.Name, p.Value));
                    else if (!JsonElement.DeepEquals(properties[at].Schema, p.Value)) { why = $"the property '{p.Name}' has different schemas in two members"; return null; }
                }
            }
            if (part.TryGetProperty("required", out var req) && req.ValueKind == JsonValueKind.Array)
                foreach (var r in req.EnumerateArray())
                    if (r.ValueKind == JsonValueKind.String) required.Add(r.GetString()!);
            if (part.TryGetProperty("additionalProperties", out var extra))
            {
                if (extra.ValueKind == JsonValueKind.False) allowed = allowed is null ? own : [.. allowed.Intersect(own)];
                else if (extra.ValueKind != JsonValueKind.True) { why = "a member's additionalProperties is a schema"; return null; }
            }
        }
        var written = properties.Where(p => allowed is null || allowed.Contains(p.Name)).ToList();
        foreach (var r in required.Where(r => written.All(p => p.Name != r)))
            throw new GrammarException(properties.Any(p => p.Name == r)
                ? $"'{r}' is required by a member of allOf, but a member closed by additionalProperties: false does not list it: no document satisfies them all"
                : $"'{r}' is required by a member of allOf, but no member lists it", path);
        var merged = new JsonObject
        {
            ["type"] = "object",
            ["properties"] = new JsonObject(written.Select(p => KeyValuePair.Create(p.Name, JsonNode.Parse(p.Schema.GetRawText())))),
            ["required"] = new JsonArray([.. required.Select(r => (JsonNode)r)]),
            ["additionalProperties"] = false,
        };
        using var document = JsonDocument.Parse(merged.ToJsonString());
        return document.RootElement.Clone();
    }
}
