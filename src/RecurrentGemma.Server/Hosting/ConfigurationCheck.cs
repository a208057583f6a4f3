using System.Globalization;
using System.Net;
using System.Reflection;
using RecurrentGemma.Engine;

namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Checks the configuration before anything starts, so a mistake ends the process at once with a
/// line that names the setting (exit code 2) — not a model load that fails in the background
/// while the process stays up unready, and not a setting silently ignored. It finds: values that
/// are not of their setting's type or outside its range, names that are not settings of this
/// server (a misspelt key in a section of ours: "Engine:PrefillTokenBuget"), and unknown choices
/// (Sessions:Store=mongo, Model:DType=fp8). Sections of other components (Serilog, Logging,
/// Kestrel, OTEL_*) are theirs to check.
/// </summary>
public static class ConfigurationCheck
{
    /// <summary>Each section of ours, with the option types bound from it (Sessions feeds the engine too).</summary>
    static readonly (string Section, Type[] Types, string[] Keys)[] Sections =
    [
        ("Model", [typeof(ModelOptions)], []),
        ("Engine", [typeof(EngineOptions)], []),
        ("Sessions", [typeof(SessionsOptions), typeof(EngineOptions)], []),
        ("Api", [typeof(ApiOptions)], []),
        ("Responses", [typeof(Responses.ResponsesOptions)], []),
        ("Ui", [typeof(Ui.UiOptions)], []),
        ("Auth", [typeof(AuthOptions)], []),
        ("Cors", [typeof(CorsOptions)], []),
        ("Logs", [], ["Format"]),   // read directly (Telemetry.cs)
    ];

    /// <summary>The problems found, one line each; empty when the configuration can be used.</summary>
    public static IReadOnlyList<string> Problems(IConfiguration config)
    {
        var problems = new List<string>();
        foreach (var (section, types, keys) in Sections) UnknownKeys(config.GetSection(section), types, keys, problems);
        var model = Bind<ModelOptions>(config, "Model", problems);
        var engine = Bind<EngineOptions>(config, "Engine", problems);
        var sessions = Bind<SessionsOptions>(config, "Sessions", problems);
        var sessionEngine = Bind<EngineOptions>(config, "Sessions", problems);
        var api = Bind<ApiOptions>(config, "Api", problems);
        var responses = Bind<Responses.ResponsesOptions>(config, "Responses", problems);
        Bind<Ui.UiOptions>(config, "Ui", problems);
        Bind<AuthOptions>(config, "Auth", problems);
        Bind<CorsOptions>(config, "Cors", problems);

        void Check(bool ok, string problem) { if (!ok) problems.Add(problem); }
        if (model is not null)
        {
            Check(Choice(model.DType, "auto", "f32", "float32", "fp32", "bf16", "bfloat16"), $"Model:DType '{model.DType}' is not auto, f32 or bf16");
            string device = (model.Device ?? "").Trim().ToLowerInvariant();
            Check(device is "" or "auto" or "cpu" or "cuda" || (device.StartsWith("cuda:") && int.TryParse(device[5..], out int n) && n >= 0),
                $"Model:Device '{model.Device}' is not auto, cpu, cuda or cuda:N");
        }
        if (engine is not null)
        {
            Check(engine.MaxSlots is null or > 0, "Engine:MaxSlots must be positive (or unset)");
            Check(engine.StateMemoryMiB is null or > 0, "Engine:StateMemoryMiB must be positive (or unset)");
            Check(engine.DeviceMemoryFraction is > 0 and <= 1, "Engine:DeviceMemoryFraction must be in (0, 1]");
            foreach (var (name, value) in new[]
            {
                ("MaxRunningSequences", engine.MaxRunningSequences ?? 1), ("PrefillTokenBudget", engine.PrefillTokenBudget), ("ScoredChunkTokens", engine.ScoredChunkTokens),
                ("SeededForwardTokens", engine.SeededForwardTokens), ("MaxPromptTokens", engine.MaxPromptTokens), ("MaxNewTokens", engine.MaxNewTokens), ("MaxChoices", engine.MaxChoices),
            })
                Check(value > 0, $"Engine:{name} must be positive, got {value}");
            Check(engine.MaxQueuedRequests >= 0, $"Engine:MaxQueuedRequests must be 0 or more, got {engine.MaxQueuedRequests}");
        }
        if (sessionEngine is not null)
        {
            Check(sessionEngine.MaxParkedPerOwner is null or >= 0, "Sessions:MaxParkedPerOwner must be 0 (no limit) or positive");
            Check(sessionEngine.HostMemoryMiB >= 0, "Sessions:HostMemoryMiB must be 0 (off) or positive");
            Check(sessionEngine.MaxStoredStates >= 0, "Sessions:MaxStoredStates must be 0 (no limit) or positive");
        }
        if (sessions is not null)
        {
            Check(Choice(sessions.Store, "disk", "redis"), $"Sessions:Store '{sessions.Store}' is not disk or redis");
            if (string.Equals(sessions.Store?.Trim(), "redis", StringComparison.OrdinalIgnoreCase))
                Check(!string.IsNullOrWhiteSpace(sessions.Redis), "Sessions:Store is redis but Sessions:Redis (the connection string, e.g. redis:6379) is empty");
            Check(sessions.TimeToLive is null || sessions.TimeToLive > TimeSpan.Zero, "Sessions:TimeToLive must be positive (or unset: no limit)");
            if (!string.IsNullOrWhiteSpace(sessions.EncryptionKey))
                Check(IsKey(sessions.EncryptionKey), "Sessions:EncryptionKey must be base64 of 32 random bytes (e.g. openssl rand -base64 32)");
        }
        if (api is not null)
        {
            Check(api.MaxRequestBodyBytes > 0, "Api:MaxRequestBodyBytes must be positive");
            Check(api.DefaultMaxTokens > 0, "Api:DefaultMaxTokens must be positive");
            Check(api.MaxConcurrentRequestsPerKey > 0, "Api:MaxConcurrentRequestsPerKey must be positive");
            Check(api.KeepAliveSeconds > 0, "Api:KeepAliveSeconds must be positive");
            Check(api.ShutdownGraceSeconds >= 0, "Api:ShutdownGraceSeconds must be 0 or more");
            Check(api.MaxPromptsPerRequest > 0, "Api:MaxPromptsPerRequest must be positive");
            foreach (var entry in api.TrustedProxies.Where(p => !string.IsNullOrWhiteSpace(p)).Select(p => p.Trim()))
                Check(entry.Contains('/') ? IPNetwork.TryParse(entry, out _) : IPAddress.TryParse(entry, out _),
                    $"Api:TrustedProxies: '{entry}' is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)");
        }
        if (responses is not null) Check(responses.MaxStored > 0, "Responses:MaxStored must be positive");
        Check(Choice(config["Logs:Format"], "text", "json"), $"Logs:Format '{config["Logs:Format"]}' is not text or json");
        return problems;
    }

    static bool Choice(string? value, params string[] allowed) =>
        string.IsNullOrWhiteSpace(value) || allowed.Contains(value.Trim(), StringComparer.OrdinalIgnoreCase);

    static bool IsKey(string base64)
    {
        var bytes = new byte[64];
        return Convert.TryFromBase64String(base64.Trim(), bytes, out int written) && written == 32;
    }

    /// <summary>The section as its options type; a value of the wrong type is a problem naming its key.</summary>
    static T? Bind<T>(IConfiguration config, string section, List<string> problems) where T : class
    {
        try { return config.GetSection(section).Get<T>() ?? Activator.CreateInstance<T>(); }
        catch (InvalidOperationException e)
        {
            // The binder's message names the key and the type: "Failed to convert configuration
            // value 'abc' at 'Engine:MaxSlots' to type 'System.Int32'."
            problems.Add(e.Message);
            return null;
        }
    }

    /// <summary>Keys of the section that no bound type has as a property (lists and dictionaries below a known key are the property's).</summary>
    static void UnknownKeys(IConfigurationSection section, Type[] types, string[] keys, List<string> problems)
    {
        var known = types.SelectMany(t => t.GetProperties(BindingFlags.Public | BindingFlags.Instance)).Select(p => p.Name)
            .Concat(keys).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
            if (!known.Contains(child.Key))
            {
                var near = known.OrderBy(k => Distance(k.ToLowerInvariant(), child.Key.ToLowerInvariant())).FirstOrDefault();
                bool close = near is not null && Distance(near.ToLowerInvariant(), child.Key.ToLowerInvariant()) <= Math.Max(2, near.Length / 4);
                problems.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{section.Path}:{child.Key} is not a setting of this server{(close ? $" (did you mean {section.Path}:{near}?)" : "")}"));
            }
    }

    /// <summary>Edit distance, for the suggestion.</summary>
    static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
