using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// Reads a JSON body by hand rather than through minimal-API binding, so every failure becomes an
/// OpenAI error naming the field: 415 for a wrong content type, 413 for a body over the limit,
/// 400 for malformed JSON or a value of the wrong type (param = the JSON path, e.g. "temperature").
/// </summary>
public static class RequestReader
{
    public static async Task<T> ReadAsync<T>(HttpContext context, JsonTypeInfo<T> type) where T : class
    {
        var request = context.Request;
        var contentType = request.ContentType ?? "";
        if (!contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw new ApiError(415, $"Content-Type must be application/json, got '{(contentType.Length == 0 ? "none" : Clip(contentType))}'.", "invalid_request_error", null, "unsupported_media_type");

        // Bodies are read as sent: a compressed body would be parsed as garbage (or be a
        // decompression bomb), so any coding other than identity is refused up front.
        var encoding = request.Headers.ContentEncoding.ToString().Trim();
        if (encoding.Length > 0 && !encoding.Equals("identity", StringComparison.OrdinalIgnoreCase))
            throw new ApiError(415, $"Content-Encoding '{Clip(encoding)}' is not supported; send the body uncompressed.", "invalid_request_error", null, "unsupported_media_type");

        long limit = context.RequestServices.GetRequiredService<IOptions<ApiOptions>>().Value.MaxRequestBodyBytes;
        if (request.ContentLength > limit) throw TooLarge(limit);
        var sizeFeature = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false }) sizeFeature.MaxRequestBodySize = limit;

        byte[] body;
        try
        {
            using var buffer = new MemoryStream();
            var chunk = new byte[81920];
            int n;
            while ((n = await request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
            {
                buffer.Write(chunk, 0, n);
                if (buffer.Length > limit) throw TooLarge(limit);
            }
            body = buffer.ToArray();
        }
        catch (BadHttpRequestException e) when (e.StatusCode == 413) { throw TooLarge(limit); }

        if (body.Length == 0) throw ApiError.Invalid("The request body is empty; expected a JSON object.", null);
        if (context.RequestServices.GetRequiredService<IOptions<ApiOptions>>().Value.LogText)
            context.Items["rg.body"] = System.Text.Encoding.UTF8.GetString(body);
        if (JsonBodyCheck.Find(body) is { } defect) throw defect;
        try
        {
            return JsonSerializer.Deserialize(body, type) ?? throw ApiError.Invalid("The request body must be a JSON object, not null.", null);
        }
        catch (JsonException e)
        {
            var param = ParamFromPath(e.Path);
            var message = param is null
                ? e.Path == "$" && e.Message.Contains("could not be converted", StringComparison.Ordinal)
                    ? $"The request body must be a JSON object, not {KindOf(body)}."   // not the server's type names
                    : $"The request body is not valid JSON: {e.Message.Split(" Path:")[0]}"
                : $"Invalid type for '{param}': {Describe(e)}";
            throw ApiError.Invalid(message, param);
        }
    }

    /// <summary>What kind of JSON value a body holds, by its first byte after any whitespace (and a UTF-8 byte order mark).</summary>
    static string KindOf(byte[] body)
    {
        foreach (byte b in body)
            switch ((char)b)
            {
                case ' ' or '\t' or '\r' or '\n' or '\uFEFF' or (char)0xEF or (char)0xBB or (char)0xBF: continue;
                case '[': return "an array";
                case '"': return "a string";
                case 't' or 'f': return "a boolean";
                default: return "a number";
            }
        return "empty";
    }

    static string Clip(string s) => s.Length > 40 ? s[..40] + "…" : s;

    static ApiError TooLarge(long limit) =>
        new(413, $"The request body is larger than the limit of {limit} bytes.", "invalid_request_error", null, "request_too_large");

    /// <summary>"$.messages[0].content" → "messages[0].content"; "$" → null.</summary>
    static string? ParamFromPath(string? path)
    {
        if (string.IsNullOrEmpty(path) || path == "$") return null;
        return path.StartsWith("$.") ? path[2..] : path.TrimStart('$');
    }

    static string Describe(JsonException e)
    {
        var m = e.Message;
        int cut = m.IndexOf(" Path:", StringComparison.Ordinal);
        m = cut > 0 ? m[..cut] : m;
        return m.Contains("could not be converted") ? "the value has the wrong JSON type or is out of range." : m;
    }
}
