using System.Text.Json.Serialization;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Ui;

/// <summary>"Ui" section.</summary>
public sealed class UiOptions
{
    /// <summary>Serve the web playground at / (its files are embedded in the server).</summary>
    public bool Enabled { get; set; } = true;
}

/// <summary>What the playground's engine panel shows: GET /v1/engine/status (behind the API key, like the API).</summary>
public sealed record EngineStatusDto(string Model, bool Demo, string Status, int SlotsTotal, int SlotsUsed, int SlotsParked, int SlotsFree,
    int HostStates, int RunningSequences, int QueuedRequests, double RecentStepMs, long Steps, long SessionHits, long ReusedTokens, long StateBytesPerSlot);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(EngineStatusDto))]
public sealed partial class UiJson : JsonSerializerContext;

/// <summary>
/// The web playground: a page, a script and a style sheet embedded in the server's assembly and
/// served at /, /app.js and /style.css — no CDN, nothing fetched at run time, no Node needed to
/// run it. The page itself is public; every API call it makes carries the key the user types.
/// </summary>
public static class Playground
{
    const string Prefix = "RecurrentGemma.Server.Ui.wwwroot.";

    /// <summary>The page's own paths — "/" and each embedded file — open without an API key (the API they call is not).</summary>
    public static readonly IReadOnlySet<string> Files = typeof(Playground).Assembly.GetManifestResourceNames()
        .Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)).Select(n => "/" + n[Prefix.Length..]).Append("/").ToHashSet(StringComparer.Ordinal);

    public static bool IsPagePath(PathString path) => Files.Contains(path.Value ?? "");

    public static WebApplication UsePlayground(this WebApplication app)
    {
        if (!app.Services.GetRequiredService<IOptions<UiOptions>>().Value.Enabled) return app;
        var files = new EmbeddedFileProvider(typeof(Playground).Assembly, Prefix.TrimEnd('.'));
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            OnPrepareResponse = c =>
            {
                // Revalidate every time (the files change with the server), and lock the page
                // down: only this origin's scripts, styles and API; no inline script at all.
                c.Context.Response.Headers.CacheControl = "no-cache";
                c.Context.Response.Headers.XContentTypeOptions = "nosniff";
                c.Context.Response.Headers.ContentSecurityPolicy =
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
                c.Context.Response.Headers["Referrer-Policy"] = "no-referrer";
            },
        });
        return app;
    }

    public static IResult EngineStatus(ModelHost host)
    {
        var s = host.Inference?.Engine.Snapshot ?? Engine.EngineSnapshot.Empty;
        return TypedResults.Json(new EngineStatusDto(host.ModelId, host.IsDemo, host.Status.ToString().ToLowerInvariant(), s.SlotsTotal, s.SlotsUsed,
            s.SlotsParked, s.SlotsFree, s.HostStates, s.RunningSequences, s.QueuedRequests, Math.Round(s.RecentStepSeconds * 1000, 2), s.Steps,
            s.SessionHits, s.ReusedTokens, s.StateBytesPerSlot), UiJson.Default.EngineStatusDto);
    }
}
