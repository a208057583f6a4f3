using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Optional API keys (Auth:ApiKeys). When keys are set, every route except /health/*, /metrics
/// and /swagger needs "Authorization: Bearer &lt;key&gt;", compared in constant time. The caller's
/// owner id (a hash of the key, never the key) scopes sessions and state reuse to that key.
/// </summary>
public static class ApiKeyAuth
{
    public const string OwnerItem = "rg.owner";

    public static bool IsOpenPath(PathString path) =>
        path.StartsWithSegments("/health") || path.StartsWithSegments("/metrics") || path.StartsWithSegments("/swagger");

    public static IApplicationBuilder UseApiKeys(this IApplicationBuilder app)
    {
        return app.Use(async (context, next) =>
        {
            var keys = context.RequestServices.GetRequiredService<IOptions<AuthOptions>>().Value.ApiKeys;
            if (keys.Count == 0 || IsOpenPath(context.Request.Path)) { await next(context); return; }
            var header = context.Request.Headers.Authorization.ToString();
            var presented = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : "";
            var hash = SHA256.HashData(Encoding.UTF8.GetBytes(presented));
            bool ok = false;
            foreach (var key in keys)   // no early exit: timing does not tell which key matched
                ok |= key.Length > 0 && CryptographicOperations.FixedTimeEquals(hash, SHA256.HashData(Encoding.UTF8.GetBytes(key)));
            if (!ok) { await ApiErrorWriter.WriteAsync(context, ApiError.Unauthorized()); return; }
            context.Items[OwnerItem] = "key:" + Convert.ToHexString(hash)[..16];
            await next(context);
        });
    }
}
