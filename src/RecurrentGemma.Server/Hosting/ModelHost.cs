using RecurrentGemma.Engine;
using RecurrentGemma.Inference;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using RecurrentGemma.Text;
using RecurrentGemma.Text.Demo;
using Microsoft.Extensions.Options;

namespace RecurrentGemma.Server.Hosting;

public enum ModelStatus { Loading, Ready, Failed, Draining }

/// <summary>
/// Loads the model in the background at start-up (the server answers 503 and /health/ready says
/// not ready until it is in), starts the engine over it, and on shutdown lets in-flight requests
/// finish for the grace period before cancelling them and stopping the engine.
/// </summary>
public sealed class ModelHost(IOptions<ModelOptions> modelOptions, IOptions<EngineOptions> engineOptions, IOptions<ApiOptions> apiOptions,
    IOptions<SessionsOptions> sessionOptions, EngineMetrics metrics, InFlightRequests inFlight, IEngineFactory engines, ILogger<ModelHost> log,
    System.Diagnostics.Metrics.IMeterFactory? meters = null)
    : IHostedLifecycleService, IAsyncDisposable
{
    /// <summary>The longest prompt in tokens (Engine:MaxPromptTokens), shown by /v1/models as vLLM does.</summary>
    public int MaxPromptTokens => engineOptions.Value.MaxPromptTokens;

    public const string DemoModelId = "recurrentgemma-demo";

    readonly CancellationTokenSource _stopping = new();
    Task? _loading;
    IEngineClient? _engine;
    GriffinForCausalLM? _model;

    public ModelStatus Status { get; private set; } = ModelStatus.Loading;
    /// <summary>What clients may see of a load failure: that it failed, and a reference id to find
    /// the details (exception text, file paths) in the server log — never the details themselves.</summary>
    public string? FailureMessage { get; private set; }
    /// <summary>The reference id written to the log with a load failure.</summary>
    public string? FailureReference { get; private set; }
    public InferenceService? Inference { get; private set; }
    /// <summary>The loaded model (null until loaded).</summary>
    public GriffinForCausalLM? Model => _model;
    public string ModelId { get; private set; } = modelOptions.Value.Id ?? (string.IsNullOrWhiteSpace(modelOptions.Value.Path)
        ? DemoModelId : System.IO.Path.GetFileName(System.IO.Path.TrimEndingDirectorySeparator(modelOptions.Value.Path)));
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    public bool IsDemo => string.IsNullOrWhiteSpace(modelOptions.Value.Path);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        ObserveState();
        _loading = Task.Run(Load, CancellationToken.None);
        return Task.CompletedTask;
    }

    static readonly string[] States = ["loading", "ready", "draining", "failed"];

    /// <summary>The server's state as Prometheus's state-set gauge, rgemma_server_state{state}: 1 for
    /// the current one, 0 for the others — what alerts on a failed or endless load read (readiness
    /// itself is seen only by the orchestrator's probes).</summary>
    void ObserveState()
    {
        if (meters is null) return;
        var meter = meters.Create(new System.Diagnostics.Metrics.MeterOptions(ServerMetrics.MeterName));   // owned by the factory
        meter.CreateObservableGauge("rgemma.server.state", () =>
        {
            string now = Status == ModelStatus.Failed ? "failed" : Status == ModelStatus.Loading ? "loading"
                : Status == ModelStatus.Draining || inFlight.Draining ? "draining" : "ready";
            return States.Select(state => new System.Diagnostics.Metrics.Measurement<int>(state == now ? 1 : 0, new KeyValuePair<string, object?>("state", state)));
        }, null, "1 for the server's current state (loading, ready, draining, failed), 0 for the others");
        // The usual build-info gauge: always 1, its labels say what this replica serves, so a
        // dashboard or an alert can group or filter replicas by model, dtype, device and version.
        meter.CreateObservableGauge<int>("rgemma.server.info", () => _model is { } m
            ? [new System.Diagnostics.Metrics.Measurement<int>(1,
                new KeyValuePair<string, object?>("model", ModelId), new KeyValuePair<string, object?>("dtype", m.DType == TorchSharp.torch.ScalarType.BFloat16 ? "bf16" : "f32"),
                new KeyValuePair<string, object?>("device", m.Device.type == TorchSharp.DeviceType.CUDA ? "cuda" : "cpu"), new KeyValuePair<string, object?>("version", ServiceRegistration.Version))]
            : Array.Empty<System.Diagnostics.Metrics.Measurement<int>>(), null, "1, labelled with the served model, dtype, device and the server version (once the model is loaded)");
    }

    /// <summary>Completes when loading has finished (either way); for tests and tools.</summary>
    public Task Loaded => _loading ?? Task.CompletedTask;

    void Load()
    {
        try
        {
            var options = modelOptions.Value;
            var device = TorchDevices.Resolve(options.Device);
            var dtype = TorchDevices.ResolveDType(options.DType, device);
            log.LogInformation("Device {Device} (Model:Device = {Configured}), dtype {DType} (Model:DType = {ConfiguredDType})",
                device, options.Device, dtype == TorchSharp.torch.ScalarType.BFloat16 ? "bf16" : "f32", options.DType);
            RecurrentGemma.Model.Modules.BatchInvariance.Enabled = options.BatchInvariant;
            if (device.type == TorchSharp.DeviceType.CPU && KernelChoicesPath(options.KernelChoices) is { } choices)
                log.LogInformation("CPU kernel choices: {KernelChoices}", RecurrentGemma.Model.Modules.KernelChoices.UseFile(choices));
            GemmaTokenizer tokenizer;
            if (IsDemo)
            {
                log.LogWarning("No Model:Path configured: serving the embedded DEMO model '{ModelId}' (random weights, a tiny tokenizer). Its output is meaningless text; set Model:Path to a RecurrentGemma checkpoint directory to serve a real model.", ModelId);
                tokenizer = DemoTokenizer.Load();
                _model = new GriffinForCausalLM(DemoConfig(tokenizer.VocabSize), dtype, device);
                RandomWeights.Initialize(_model, seed: 20240411);
            }
            else
            {
                var dir = options.Path!;
                log.LogInformation("Loading model {ModelId} from {Path}", ModelId, dir);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                int lastPercent = -10;
                var progress = new Progress<LoadProgress>(p =>
                {
                    int percent = (int)(100.0 * p.BytesDone / Math.Max(1, p.BytesTotal));
                    if (percent < lastPercent + 10 && p.TensorsDone != p.TensorsTotal) return;
                    lastPercent = percent;
                    log.LogInformation("Loading {ModelId}: {Done}/{Total} tensors, {MB:F0}/{TotalMB:F0} MB ({Rate:F0} MB/s)",
                        ModelId, p.TensorsDone, p.TensorsTotal, p.BytesDone / 1e6, p.BytesTotal / 1e6, p.MegabytesPerSecond);
                });
                _model = CheckpointLoader.Load(dir, new ModelLoadOptions
                {
                    DType = dtype, Device = device, Progress = progress,
                });
                tokenizer = GemmaTokenizer.FromFile(System.IO.Path.Combine(dir, "tokenizer.model"));
                if (tokenizer.VocabSize > _model.Config.VocabSize)
                    throw new InvalidDataException($"tokenizer.model has {tokenizer.VocabSize} pieces, the model only {_model.Config.VocabSize}");
                log.LogInformation("Loaded {ModelId} in {Seconds:F1} s ({Params:F2}B parameters)", ModelId, clock.Elapsed.TotalSeconds, _model.Config.ParameterCount / 1e9);
            }
            var sessions = sessionOptions.Value;
            var engineSettings = engineOptions.Value with
            {
                StorePath = string.IsNullOrWhiteSpace(sessions.Path) ? null : sessions.Path,
                StoreRedis = sessions.Store?.Equals("redis", StringComparison.OrdinalIgnoreCase) == true
                    ? (string.IsNullOrWhiteSpace(sessions.Redis) ? throw new InvalidOperationException("Sessions:Store=redis needs Sessions:Redis (a connection string)") : sessions.Redis)
                    : null,
                StateFingerprint = Fingerprint(_model, options.Path),
                StateTimeToLive = sessions.TimeToLive,
                StoreEncryptionKey = string.IsNullOrWhiteSpace(sessions.EncryptionKey) ? null : Convert.FromBase64String(sessions.EncryptionKey.Trim()),
            };
            int runningLimit = engineSettings.ForDevice(device.type).RunningLimit;
            if (engineSettings.StoreRedis is not null) log.LogInformation("Parked states persist in Redis (shared by replicas)");
            else if (engineSettings.StorePath is not null) log.LogInformation("Parked states persist in {StorePath}", engineSettings.StorePath);
            _engine = engines.Create(_model, engineSettings, metrics);
            if (_engine is EngineClient withStore) withStore.StoreFailed += reason => log.LogWarning("Session store: {Reason}", reason);
            Inference = new InferenceService(_engine, tokenizer, ModelId, new InferenceOptions
            {
                AllowSpecialTokensInContent = apiOptions.Value.AllowSpecialTokensInContent,
                MaxPromptTokens = engineOptions.Value.MaxPromptTokens,
            });
            Status = _stopping.IsCancellationRequested ? ModelStatus.Draining : ModelStatus.Ready;
            log.LogInformation("Model {ModelId} ready: {Slots} state slots of {MiB:F1} MiB, sized by {Sizing}; up to {Running} sequences at once{Default}", ModelId, _engine.Snapshot.SlotsTotal,
                _engine.Snapshot.StateBytesPerSlot / 1048576.0, (_engine as EngineClient)?.SlotSizing ?? "the engine", runningLimit,
                engineSettings.MaxRunningSequences is null ? $" (the {(device.type == TorchSharp.DeviceType.CPU ? "CPU" : "GPU")}'s default; Engine:MaxRunningSequences sets it)" : "");
            if (_engine is EngineClient client) log.LogInformation("Engine threads: {ThreadChoice}", client.ThreadChoice);
            log.LogInformation("Batch-1 projections: {SimdGemv}", RecurrentGemma.Model.Modules.SimdGemv.Describe());
            if (device.type == TorchSharp.DeviceType.CPU)
            {
                log.LogInformation("Batch invariance: {BatchInvariance}", RecurrentGemma.Model.Modules.BatchInvariance.Describe());
                if (RecurrentGemma.Model.Modules.BatchInvariance.Enabled)
                    log.LogInformation("Seeded prompts: {SeededPrefill}", _model.RowExactAvailable
                        ? "a step's seeded prompts are prefilled together in one row-exact forward"
                        : "each seeded prompt is prefilled in a forward of its own (the row-exact forward needs the model's GEMM kernel for its dtype, missing here)");
                if (RecurrentGemma.Model.Modules.BatchInvariance.Enabled && runningLimit > RecurrentGemma.Model.Modules.BatchInvariance.MaxRows)
                    log.LogWarning("Engine:MaxRunningSequences is {Running}: decode steps of more than {Rows} sequences take the kernels timed fastest, and a seeded request's text in such a step can differ from its text alone",
                        runningLimit, RecurrentGemma.Model.Modules.BatchInvariance.MaxRows);
                log.LogInformation("libtorch's OpenMP threads: {OpenMp}", RecurrentGemma.Model.OpenMpTuning.Describe());
                log.LogInformation("C heap: {Malloc}", RecurrentGemma.Model.MemoryTuning.Describe());
                log.LogInformation("Many-row f32 projections: {F32Gemm}", RecurrentGemma.Model.Modules.F32Gemm.Describe());
                log.LogInformation("Many-row bf16 projections: {Bf16Gemm}", RecurrentGemma.Model.Modules.Bf16Gemm.Describe());
                log.LogInformation("CPU kernel choices: {KernelChoices}", RecurrentGemma.Model.Modules.KernelChoices.Describe());
            }
            if (dtype == TorchSharp.torch.ScalarType.BFloat16 && device.type == TorchSharp.DeviceType.CPU
                && RecurrentGemma.Model.Modules.Linear.UpcastBf16OnCpu is null)
                log.LogInformation("Many-row bf16 projections: {Bf16Upcast}", RecurrentGemma.Model.Modules.Bf16Upcast.Describe());
        }
        catch (Exception e)
        {
            FailureReference = "load-" + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6)).ToLowerInvariant();
            FailureMessage = $"The model failed to load (reference {FailureReference}; the server log has the details).";
            Status = ModelStatus.Failed;
            log.LogError(e, "Loading model {ModelId} failed (reference {Reference}): {Message}", ModelId, FailureReference, e.Message);
        }
    }

    /// <summary>
    /// Identifies the served weights for stored states: the config, the dtype, and the checkpoint's
    /// files (names, sizes, modification times) — or the demo's fixed seed. A state stored by any
    /// other model is never restored.
    /// </summary>
    static string Fingerprint(GriffinForCausalLM model, string? path)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(System.Text.Json.JsonSerializer.Serialize(model.Config)).Append('|').Append(model.DType);
        if (string.IsNullOrWhiteSpace(path)) sb.Append("|demo:20240411");
        else
            foreach (var f in new DirectoryInfo(path).EnumerateFiles("*.safetensors").OrderBy(f => f.Name, StringComparer.Ordinal))
                sb.Append('|').Append(f.Name).Append(':').Append(f.Length).Append(':').Append(f.LastWriteTimeUtc.Ticks);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>Model:KernelChoices as a file path (null: off). "auto": the user's cache directory.</summary>
    internal static string? KernelChoicesPath(string? setting)
    {
        if (string.IsNullOrWhiteSpace(setting) || setting.Equals("off", StringComparison.OrdinalIgnoreCase)) return null;
        if (!setting.Equals("auto", StringComparison.OrdinalIgnoreCase)) return setting;
        var cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (string.IsNullOrWhiteSpace(cache))
        {
            var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrWhiteSpace(home)) return null;   // nowhere to keep them: each process times its own
            cache = System.IO.Path.Combine(home, ".cache");
        }
        return System.IO.Path.Combine(cache, "rgemma", "kernel-choices.json");
    }

    /// <summary>The demo model's shape: small enough to build in a moment on any machine.</summary>
    public static GriffinConfig DemoConfig(int vocab) => new()
    {
        VocabSize = vocab, HiddenSize = 128, IntermediateSize = 768, NumHiddenLayers = 6, NumAttentionHeads = 4,
        LruWidthOverride = 128, AttentionWindowSize = 256,
    };

    /// <summary>
    /// SIGTERM, step 1 — runs before any service (Kestrel included) stops, so the server still
    /// accepts connections: readiness turns false, new requests get 503, in-flight requests get
    /// the grace period, then what is left is cancelled and its streams end cleanly.
    /// </summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        if (Status == ModelStatus.Ready) Status = ModelStatus.Draining;
        _stopping.Cancel();
        log.LogInformation("Shutting down: draining {InFlight} request(s) for up to {Grace} s", inFlight.Count, apiOptions.Value.ShutdownGraceSeconds);
        await inFlight.DrainAsync(TimeSpan.FromSeconds(apiOptions.Value.ShutdownGraceSeconds), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>SIGTERM, step 2: the engine stops (its thread ends; nothing is left running).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_engine is IAsyncDisposable engine) await engine.DisposeAsync().ConfigureAwait(false);
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (_engine is IAsyncDisposable engine) await engine.DisposeAsync().ConfigureAwait(false);
        _model?.Dispose();
        _stopping.Dispose();
    }
}
