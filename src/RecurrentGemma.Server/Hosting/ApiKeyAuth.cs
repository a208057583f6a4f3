using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Optional API keys (Auth:ApiKeys). When keys are set, every route except /health/*, /ping,
/// /version, /metrics, /swagger and the playground's own files needs "Authorization: Bearer &lt;key&gt;", compared in constant time. The caller's
/// owner id (a hash of the key, never the key) scopes sessions and state reuse to that key.
/// </summary>
public static class ApiKeyAuth
{
    public const string OwnerItem = "rg.owner";

    public static bool IsOpenPath(PathString path) =>
        path.StartsWithSegments("/health") || path.StartsWithSegments("/metrics") || path.StartsWithSegments("/swagger")
        || path.Equals("/ping", StringComparison.OrdinalIgnoreCase) || path.Equals("/version", StringComparison.OrdinalIgnoreCase) || Ui.Playground.IsPagePath(path);

    /// <summary>
    /// Drops empty and whitespace-only keys from the configuration. docker-compose binds
    /// Auth__ApiKeys__0 to ${RG_API_KEY:-}, so an unset variable arrives as one empty key; taken
    /// literally it would switch auth on with a key nobody can send and lock every client out.
    /// Returns how many were dropped, for a start-up warning.
    /// </summary>
    public static int DropBlankKeys(AuthOptions options)
    {
        int before = options.ApiKeys.Count;
        options.ApiKeys = options.ApiKeys.Where(k => !string.IsNullOrWhiteSpace(k)).ToList();
        options.IgnoredBlankKeys = before - options.ApiKeys.Count;
        return options.IgnoredBlankKeys;
    }

    public static IApplicationBuilder UseApiKeys(this IApplicationBuilder app)
    {
        var auth = app.ApplicationServices.GetRequiredService<IOptions<AuthOptions>>().Value;
        var log = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("RecurrentGemma.Server.Auth");
        if (auth.IgnoredBlankKeys > 0)
            log.LogWarning("Ignored {Count} empty API key(s) in Auth:ApiKeys (an unset variable?)", auth.IgnoredBlankKeys);
        log.LogInformation(auth.ApiKeys.Count == 0 ? "API keys: none configured, the API is open" : "API keys: {Count} configured", auth.ApiKeys.Count);
        return app.Use(async (context, next) =>
        {
            var keys = context.RequestServices.GetRequiredService<IOptions<AuthOptions>>().Value.ApiKeys;
            if (keys.Count == 0 || IsOpenPath(context.Request.Path)) { await next(context); return; }
            var header = context.Request.Headers.Authorization.ToString();
            // The key is compared byte for byte: not trimmed, not case-folded (only the scheme
            // name is case-insensitive, as HTTP says).
            var presented = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..] : "";
            var hash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
            bool ok = false;
            foreach (var key in keys)   // no early exit: timing does not tell which key matched
                ok |= presented.Length > 0 && CryptographicOperations.FixedTimeEquals(hash, SHA256.HashData(Encoding.UTF8.GetBytes(key)));
            if (!ok) { await ApiErrorWriter.WriteAsync(context, ApiError.Unauthorized()); return; }
            context.Items[OwnerItem] = "key:" + Convert.ToHexString(hash)[..16];
            await next(context);
        });
    }
}
