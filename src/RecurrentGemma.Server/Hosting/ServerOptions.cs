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
}

/// <summary>"Auth" section. With no keys, the API is open.</summary>
public sealed class AuthOptions
{
    public List<string> ApiKeys { get; set; } = [];
}

/// <summary>"Cors" section. No origins: CORS is off.</summary>
public sealed class CorsOptions
{
    public List<string> Origins { get; set; } = [];
}
