using System.Text.Json;

namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// uniqueItems over a small finite item set — an enum, a const, booleans (Python's set of an Enum
/// or of Literal values, as Pydantic writes it) — as arrays that never repeat a value: the grammar's
/// state is the set of values already written (one rule per subset), so at most
/// <see cref="MaxValues"/> values. Any other item schema: null (not supported: strict mode refuses
/// uniqueItems, otherwise it is ignored).
/// </summary>
internal static class UniqueItemsGrammar
{
    public const int MaxValues = 8;

    /// <summary>The distinct values an item may take, when it is such a finite set; else null.</summary>
    public static List<JsonElement>? Values(JsonElement root, JsonElement items)
    {
        var s = SchemaValueKinds.Resolve(root, items);
        if (s.ValueKind != JsonValueKind.Object) return null;
        IEnumerable<JsonElement>? values = null;
        if (s.TryGetProperty("const", out var c)) values = [c];
        else if (s.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array) values = e.EnumerateArray();
        else if (SchemaValueKinds.DeclaredTypes(s) is { Count: 1 } only && s.EnumerateObject().All(p => p.Name is "type" or "title" or "description"))
            values = only.Single() switch
            {
                "boolean" => [JsonDocument.Parse("true").RootElement, JsonDocument.Parse("false").RootElement],
                "null" => [JsonDocument.Parse("null").RootElement],
                _ => null,
            };
        if (values is null) return null;
        if (SchemaValueKinds.DeclaredTypes(s) is { } types) values = values.Where(v => SchemaValueKinds.TypesOf(v).Any(types.Contains));
        var distinct = new List<JsonElement>();
        foreach (var v in values)
            if (!distinct.Any(d => JsonElement.DeepEquals(d, v))) distinct.Add(v.Clone());
        return distinct.Count is > 0 and <= MaxValues ? distinct : null;
    }

    /// <summary>Arrays of min..max (null: any) of the values, none twice, in any order.</summary>
    public static int Arrays(ByteGrammar g, List<JsonElement> values, int min, int? max)
    {
        int n = values.Count;
        int most = Math.Min(max ?? n, n);
        if (min > most) throw new GrammarException($"minItems ({min}) is more than the {n} distinct values the items may take", "");
        var literals = values.Select(v => g.Literal(JsonSerializer.SerializeToUtf8Bytes(v))).ToArray();
        int comma = g.Byte((byte)','), close = g.Byte((byte)']');
        var rules = new Dictionary<int, int>();
        // After(used): the rest of the array once the values in `used` are written.
        int After(int used)
        {
            if (rules.TryGetValue(used, out int known)) return known;
            int count = System.Numerics.BitOperations.PopCount((uint)used);
            var alternatives = new List<int[]>();
            if (count >= min) alternatives.Add([close]);
            if (count < most)
                for (int i = 0; i < n; i++)
                    if ((used & (1 << i)) == 0)
                        alternatives.Add(count == 0 ? [literals[i], After(used | 1 << i)] : [comma, literals[i], After(used | 1 << i)]);
            return rules[used] = g.Rule([.. alternatives]);
        }
        return g.Seq(g.Byte((byte)'['), After(0));
    }
}
