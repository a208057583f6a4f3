namespace RecurrentGemma.Server.Hosting;

/// <summary>"Model" section: what to serve.</summary>
public sealed class ModelOptions
{
    /// <summary>A Hugging Face snapshot directory (config.json, safetensors, tokenizer.model).
    /// Empty: the embedded demo model.</summary>
    public string? Path { get; set; }
    /// <summary>The model id clients send; default: the directory name (or recurrentgemma-demo).</summary>
    public string? Id { get; set; }
    /// <summary>auto (bf16 on a GPU, f32 on the CPU), f32 or bf16 parameters.</summary>
    public string DType { get; set; } = "auto";
    /// <summary>auto (cuda when available), cpu or cuda.</summary>
    public string Device { get; set; } = "auto";
    /// <summary>On the CPU, compute each sequence's decode step exactly as it would run alone
    /// (up to 16 sequences a step) and prefill a seeded prompt in forwards of its own, so a seed
    /// gives the same text whatever else is running; false takes the per-row-count fastest
    /// kernels instead (docs/benchmarks.md measures the difference). Process-wide.</summary>
    public bool BatchInvariant { get; set; } = true;
    /// <summary>Where the CPU kernels' timed decisions are kept, so that a restart (or a replica
    /// sharing the file) takes the same kernels and a seed the same text: a file path, "auto"
    /// ($XDG_CACHE_HOME or ~/.cache, rgemma/kernel-choices.json) or "off" (each process times its
    /// own). A file written on another CPU or build is replaced.</summary>
    public string KernelChoices { get; set; } = "auto";
}

/// <summary>"Api" section: limits of the HTTP surface.</summary>
public sealed class ApiOptions
{
    public long MaxRequestBodyBytes { get; set; } = 4 * 1024 * 1024;
    /// <summary>max_tokens when a chat request gives none (completions default to 16, as OpenAI).</summary>
    public int DefaultMaxTokens { get; set; } = 512;
    /// <summary>Concurrent requests per API key (or per client address without keys).</summary>
    public int MaxConcurrentRequestsPerKey { get; set; } = 64;
    /// <summary>Seconds between SSE keep-alive comments while a stream waits (e.g. a long prefill).</summary>
    public double KeepAliveSeconds { get; set; } = 10;
    /// <summary>On SIGTERM, how long in-flight requests may run before they are cancelled.</summary>
    public double ShutdownGraceSeconds { get; set; } = 30;
    /// <summary>Log prompt and completion text (off: never logged).</summary>
    public bool LogText { get; set; }
    /// <summary>Proxies (addresses or CIDR networks, e.g. 10.0.0.0/8) whose X-Forwarded-For is
    /// believed. Without keys, per-client limits use the client's address: behind an ingress that
    /// is the ingress's unless it is listed here. Empty: forwarded headers are ignored.</summary>
    public List<string> TrustedProxies { get; set; } = [];
    /// <summary>Tokenize message content as raw SentencePiece does, so a turn marker typed in a
    /// message becomes a real one (off: only the chat template emits markers).</summary>
    public bool AllowSpecialTokensInContent { get; set; }
    /// <summary>Most prompts in one /v1/completions request.</summary>
    public int MaxPromptsPerRequest { get; set; } = 64;
}

/// <summary>"Sessions" section: where parked conversations live beyond the device pool
/// (MaxParkedPerOwner and HostMemoryMiB are engine settings bound from here too).</summary>
public sealed class SessionsOptions
{
    /// <summary>A private directory for the persistent tier; empty: none (states live in memory only).</summary>
    public string? Path { get; set; }
    /// <summary>A stored state unused for longer is not used (e.g. "7.00:00:00"; restoring one
    /// starts its time again), and stored responses expire this long after they are made; null: no limit.</summary>
    public TimeSpan? TimeToLive { get; set; }
    /// <summary>disk (the default when Path is set) or redis (shared by every replica).</summary>
    public string? Store { get; set; }
    /// <summary>The Redis connection string for Store=redis (e.g. "redis:6379").</summary>
    public string? Redis { get; set; }
    /// <summary>Base64 of 32 random bytes: stored states are encrypted at rest (AES-GCM). Keep it in
    /// a secret; every replica sharing a store needs the same key.</summary>
    public string? EncryptionKey { get; set; }
}

/// <summary>"Auth" section. With no keys, the API is open.</summary>
public sealed class AuthOptions
{
    /// <summary>Bearer keys, compared exactly. Empty or whitespace entries are ignored (with a warning).</summary>
    public List<string> ApiKeys { get; set; } = [];
    /// <summary>How many blank entries were dropped from <see cref="ApiKeys"/> (set at start-up).</summary>
    internal int IgnoredBlankKeys { get; set; }
}

/// <summary>"Cors" section. No origins: CORS is off.</summary>
public sealed class CorsOptions
{
    public List<string> Origins { get; set; } = [];
}
