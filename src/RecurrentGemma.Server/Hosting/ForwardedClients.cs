using System.Net;
using Microsoft.AspNetCore.HttpOverrides;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Api:TrustedProxies → ASP.NET's forwarded-headers middleware. The client address (the
/// per-client rate-limit partition when no API keys are set, and the request log's address) is
/// taken from X-Forwarded-For only when the connection comes from a listed proxy; the framework's
/// default of trusting loopback is dropped, so an unlisted peer cannot pick its own bucket.
/// </summary>
public static class ForwardedClients
{
    public static IServiceCollection AddForwardedClients(this IServiceCollection services, IConfiguration config)
    {
        var proxies = config.GetSection("Api:TrustedProxies").Get<string[]>() ?? [];
        services.Configure<ForwardedHeadersOptions>(o =>
        {
            o.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            o.KnownProxies.Clear();
            o.KnownIPNetworks.Clear();
            o.ForwardLimit = null;   // walk the whole chain, stopping at the first untrusted hop
            foreach (var entry in proxies.Where(p => !string.IsNullOrWhiteSpace(p)).Select(p => p.Trim()))
            {
                if (entry.Contains('/'))
                {
                    if (!System.Net.IPNetwork.TryParse(entry, out var network))
                        throw new InvalidOperationException($"Api:TrustedProxies: '{entry}' is not an IP network (e.g. 10.0.0.0/8)");
                    o.KnownIPNetworks.Add(network);
                }
                else if (IPAddress.TryParse(entry, out var address)) o.KnownProxies.Add(address);
                else throw new InvalidOperationException($"Api:TrustedProxies: '{entry}' is not an IP address");
            }
        });
        return services;
    }

    /// <summary>Adds the middleware only when proxies are configured (otherwise headers are ignored).</summary>
    public static IApplicationBuilder UseForwardedClients(this IApplicationBuilder app, IConfiguration config)
    {
        var proxies = config.GetSection("Api:TrustedProxies").Get<string[]>() ?? [];
        return proxies.Any(p => !string.IsNullOrWhiteSpace(p)) ? app.UseForwardedHeaders() : app;
    }
}
