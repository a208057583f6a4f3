using System.Text;
using System.Text.Json;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// One pass over a request body before it is bound, so byte-level defects become a 400 naming
/// the field instead of surfacing later as an exception deep in validation or the tokenizer:
/// strings (values and property names) that are not valid UTF-8 or hold a lone surrogate escape
/// ("\ud800"), and <c>null</c> as an array element (no OpenAI field takes one — except inside
/// the JSON Schemas a request carries, under "schema" and "parameters", where enum: [null] is
/// fine). System.Text.Json
/// only checks a string's encoding when it is read, and fields kept as JsonElement are read late,
/// which is why this runs once here for every endpoint and every field added later.
/// Malformed JSON is left to the deserializer, whose message carries the path.
/// </summary>
public static class JsonBodyCheck
{
    public static ApiError? Find(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = 64 });
        var path = new List<Frame>();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName:
                        if (!Readable(ref reader)) return Invalid(path, "has a property name that is not valid UTF-8 text", appendName: false);
                        if (path.Count > 0) path[^1] = path[^1] with { Name = reader.GetString() };
                        continue;   // the value that follows is counted by its own token
                    case JsonTokenType.StartObject:
                    case JsonTokenType.StartArray:
                        Advance(path);
                        bool freeForm = path.Count > 0 && (path[^1].FreeForm || path[^1].Name is "schema" or "parameters");
                        path.Add(new Frame(reader.TokenType == JsonTokenType.StartArray, -1, null, freeForm));
                        continue;
                    case JsonTokenType.EndObject:
                    case JsonTokenType.EndArray:
                        path.RemoveAt(path.Count - 1);
                        continue;
                    case JsonTokenType.String:
                        Advance(path);
                        if (!Readable(ref reader)) return Invalid(path, "is not valid UTF-8 text (invalid bytes or a lone surrogate escape)");
                        continue;
                    case JsonTokenType.Null:
                        Advance(path);
                        if (path.Count > 0 && path[^1].IsArray && !path[^1].FreeForm) return Invalid(path, "must not be null");
                        continue;
                    default:
                        Advance(path);
                        continue;
                }
            }
        }
        catch (JsonException) { }   // malformed: the deserializer reports it with its path
        return null;
    }

    static bool Readable(ref Utf8JsonReader reader)
    {
        try { reader.GetString(); return true; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>A value starts: in an array, it is the next element.</summary>
    static void Advance(List<Frame> path)
    {
        if (path.Count > 0 && path[^1].IsArray) path[^1] = path[^1] with { Index = path[^1].Index + 1 };
    }

    static ApiError Invalid(List<Frame> path, string problem, bool appendName = true)
    {
        var param = Param(path, appendName);
        return ApiError.Invalid(param is null ? $"The request body {problem}." : $"'{param}' {problem}.", param);
    }

    /// <summary>The field path as OpenAI names it: "messages[0].content[1].text".</summary>
    static string? Param(List<Frame> path, bool appendName)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < path.Count; i++)
        {
            var f = path[i];
            if (f.IsArray) sb.Append('[').Append(Math.Max(0, f.Index)).Append(']');
            else if (f.Name is not null && (appendName || i < path.Count - 1))
            {
                if (sb.Length > 0) sb.Append('.');
                sb.Append(Sanitize(f.Name));
            }
        }
        return sb.Length == 0 ? null : sb.ToString();
    }

    /// <summary>Property names are echoed in the message: keep them short and printable.</summary>
    static string Sanitize(string name)
    {
        var s = new string(name.Take(64).Select(c => char.IsControl(c) || char.IsSurrogate(c) ? '?' : c).ToArray());
        return name.Length > 64 ? s + "…" : s;
    }

    /// <summary>One open object or array; FreeForm: inside a JSON Schema value, where nulls are data.</summary>
    readonly record struct Frame(bool IsArray, int Index, string? Name, bool FreeForm = false);
}
