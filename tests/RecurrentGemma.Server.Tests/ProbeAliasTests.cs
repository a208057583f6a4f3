using Microsoft.Extensions.DependencyInjection;
using System.Net;
using static RecurrentGemma.Server.Tests.ServerFactory;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// What routers and hosts written for vLLM probe: /health (vLLM's), /ping (SageMaker's) — both
/// the readiness check — and /version; open without an API key, like /health/*.
/// </summary>
public class ProbeAliasTests
{
    [Fact]
    public async Task Health_ping_and_version_answer_without_a_key_and_follow_readiness()
    {
        await using var server = new ServerFactory().With("Auth:ApiKeys:0", "sk-probe");
        var client = await server.ReadyClientAsync();
        foreach (var path in new[] { "/health", "/ping", "/health/ready" })
        {
            var r = await client.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.StartsWith("Healthy", await r.Content.ReadAsStringAsync());
        }
        var version = await ReadJson(await client.GetAsync("/version"));
        Assert.False(string.IsNullOrWhiteSpace(version.GetProperty("version").GetString()));
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/v1/models")).StatusCode);   // the API itself still needs the key

        // Draining: every readiness alias says so, liveness does not.
        server.Services.GetRequiredService<RecurrentGemma.Server.Hosting.InFlightRequests>().BeginDrain();
        foreach (var path in new[] { "/health", "/ping", "/health/ready" })
        {
            var r = await client.GetAsync(path);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode);
            Assert.Equal("NotReady: draining", await r.Content.ReadAsStringAsync());
        }
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
    }
}
