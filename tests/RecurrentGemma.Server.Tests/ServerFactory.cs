using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using RecurrentGemma.Engine;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.Tests;

/// <summary>The server over the embedded demo model (or a configured one), in memory.</summary>
public class ServerFactory : WebApplicationFactory<Program>
{
    readonly Dictionary<string, string?> _settings = new()
    {
        ["Engine:MaxSlots"] = "24",
        ["Engine:MaxRunningSequences"] = "16",
        ["Api:DefaultMaxTokens"] = "16",
        ["Api:ShutdownGraceSeconds"] = "2",
        ["Urls"] = "http://127.0.0.1:0",
        ["Model:KernelChoices"] = "off",   // tests keep nothing in the user's cache (KernelChoicesRestartTests names a file)
    };

    public ServerFactory With(string key, string? value) { _settings[key] = value; return this; }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (k, v) in _settings) builder.UseSetting(k, v);
    }

    /// <summary>
    /// Starts the server on a real socket (Kestrel on the port 0 of the settings: any free one) and
    /// returns its base URL. Not UseKestrel(0): that form rewrites the server's addresses after
    /// building the host, racing Kestrel's own bind on the app's thread, and loses now and then
    /// ("Addresses cannot be modified after the server has started"; an open ASP.NET Core bug).
    /// </summary>
    public string StartOnSocket()
    {
        UseKestrel();
        StartServer();
        return CreateClient().BaseAddress!.ToString().TrimEnd('/');
    }

    public ModelHost Host => Services.GetRequiredService<ModelHost>();
    public EngineSnapshot Engine => Host.Inference!.Engine.Snapshot;

    public async Task<HttpClient> ReadyClientAsync()
    {
        var client = CreateClient();
        await Host.Loaded;
        return client;
    }

    /// <summary>The repository root: the first ancestor of the test binaries holding the solution.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "RecurrentGemma.Server.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    public static StringContent JsonBody(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>A short greedy chat turn (6 tokens), optionally under a session id; asserts 200.</summary>
    public static async Task<JsonElement> GreedyChat(HttpClient client, object[] messages, string? session)
    {
        var body = JsonSerializer.Serialize(new { messages, max_tokens = 6, temperature = 0, session_id = session });
        var r = await client.PostAsync("/v1/chat/completions", JsonBody(body));
        var text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == System.Net.HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement;
    }

    public static async Task<JsonElement> ReadJson(HttpResponseMessage r) =>
        JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;

    /// <summary>Posts the body and asserts a 400 whose error names <paramref name="param"/>.</summary>
    public static async Task AssertRefusedAsync(HttpClient client, string path, string body, string param)
    {
        var r = await client.PostAsync(path, JsonBody(body));
        var error = (await ReadJson(r)).GetProperty("error");
        Assert.True(r.StatusCode == System.Net.HttpStatusCode.BadRequest, error.ToString());
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    /// <summary>Waits (bounded) for the engine to reach a condition.</summary>
    public async Task Until(Func<EngineSnapshot, bool> condition, int timeoutMs = 10000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!condition(Engine))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"engine never got there: {Engine}");
            await Task.Delay(5);
        }
    }
}

/// <summary>One shared demo server for tests that do not change its configuration.</summary>
public sealed class DemoServer : ServerFactory;
