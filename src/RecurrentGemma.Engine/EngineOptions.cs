namespace RecurrentGemma.Engine;

/// <summary>Engine configuration (bound from the "Engine" section by the server).</summary>
public sealed record EngineOptions
{
    /// <summary>State slots in the pool. When null: from <see cref="StateMemoryMiB"/>; else, on a GPU,
    /// from free device memory (<see cref="DeviceMemoryFraction"/>); else <see cref="DefaultSlots"/>.</summary>
    public int? MaxSlots { get; init; }
    public const int DefaultSlots = 16;
    /// <summary>On a GPU, the fraction of the device's memory this server may hold in all (weights,
    /// activations and state slots), as vLLM's gpu_memory_utilization; the slots get what is left.</summary>
    public double DeviceMemoryFraction { get; init; } = 0.9;
    /// <summary>Memory for state slots in MiB; slots = budget ÷ the state's bytes per sequence.</summary>
    public int? StateMemoryMiB { get; init; }
    /// <summary>Sequences decoding or prefilling at once (a request with n choices counts n). When
    /// null: <see cref="CpuRunningSequences"/> on the CPU, <see cref="GpuRunningSequences"/> on a GPU
    /// (<see cref="ForDevice"/>; the engine resolves it when it starts).</summary>
    public int? MaxRunningSequences { get; init; }
    /// <summary>The CPU's default: a step's cost grows with its rows there (each row reads its own
    /// activations through the same weights), and up to 16 rows keep batch invariance.</summary>
    public const int CpuRunningSequences = 16;
    /// <summary>A GPU's default, as vLLM's max_num_seqs: a 2B decode step there is bound by its
    /// launches, not its rows, so throughput grows almost in proportion to the sequences (one
    /// H200: ~1,900 tok/s at 32, ~13,000 at 256; docs/benchmarks.md, engine-cuda-wide).</summary>
    public const int GpuRunningSequences = 256;

    /// <summary>These options with <see cref="MaxRunningSequences"/> set for the device the engine runs on.</summary>
    public EngineOptions ForDevice(TorchSharp.DeviceType device) => MaxRunningSequences is not null ? this
        : this with { MaxRunningSequences = device == TorchSharp.DeviceType.CPU ? CpuRunningSequences : GpuRunningSequences };

    /// <summary>The running-sequence limit of resolved options (<see cref="ForDevice"/>).</summary>
    public int RunningLimit => MaxRunningSequences ?? throw new InvalidOperationException("the running-sequence limit is set when the engine starts (EngineOptions.ForDevice)");
    /// <summary>Requests waiting for admission; one more is refused as overloaded (HTTP 429).</summary>
    public int MaxQueuedRequests { get; init; } = 64;
    /// <summary>Prompt tokens prefilled per engine step across all sequences, so a long prompt
    /// delays running streams by at most one chunk.</summary>
    public int PrefillTokenBudget { get; init; } = 512;
    /// <summary>Prompt tokens a step for a request that scores its prompt (prompt logprobs): its
    /// forward keeps every position's logits, 1 MiB per token at Gemma's 256k vocabulary.</summary>
    public int ScoredChunkTokens { get; init; } = 64;
    /// <summary>Tokens of the step's budget that a forward for seeded prompts (on the CPU: the
    /// step's one row-exact forward, or each seeded prompt's own where its kernels are missing;
    /// Scheduler.PlanPrefill) counts at least: its fixed cost is one read of the weights, about
    /// what a shared chunk spends on 20–30 tokens on the 2B shape, so short seeded prompts cannot
    /// stretch a step far past what its budget allows (512 / 32: at most 16 forwards of their own
    /// a step).</summary>
    public int SeededForwardTokens { get; init; } = 32;
    public int MaxPromptTokens { get; init; } = 32768;
    public int MaxNewTokens { get; init; } = 4096;
    public int MaxChoices { get; init; } = 8;
    /// <summary>Keep finished states (under the session id and under their token ids) for reuse.</summary>
    public bool ParkFinishedStates { get; init; } = true;
    /// <summary>At start, time decode steps with one CPU thread and with all, and decode with the faster.</summary>
    public bool CalibrateThreads { get; init; } = true;
    /// <summary>Parked states one API key may hold; its oldest is dropped beyond that. Null: half
    /// the pool; 0: no limit. Requests without a key share one owner, which is not capped (it is
    /// one principal). The server binds it from Sessions:MaxParkedPerOwner.</summary>
    public int? MaxParkedPerOwner { get; init; }

    /// <summary>The per-owner parked-state cap for a pool of this many slots (0: none).</summary>
    public int ParkedCapFor(int slots) => MaxParkedPerOwner switch
    {
        null => Math.Max(1, slots / 2),
        < 0 => throw new ArgumentException("Sessions:MaxParkedPerOwner must be 0 (no limit) or positive"),
        var n => n.Value,
    };
    /// <summary>Host memory in MiB for parked states the device pool evicts (restored on demand
    /// instead of prefilled again); 0 turns the tier off. The server binds Sessions:HostMemoryMiB.</summary>
    public int HostMemoryMiB { get; init; } = 256;
    /// <summary>A directory for the persistent tier (Sessions:Path): parked states are written there
    /// when they leave host memory and at shutdown, and restored from there. Null: no persistent tier.</summary>
    public string? StorePath { get; init; }
    /// <summary>A Redis connection string for a persistent tier shared by every replica
    /// (Sessions:Store=redis); takes precedence over <see cref="StorePath"/>.</summary>
    public string? StoreRedis { get; init; }
    /// <summary>Identifies the model, its weights and dtype: a stored state is used only by the same one.</summary>
    public string StateFingerprint { get; init; } = "";
    /// <summary>32 bytes: seal stored states and their headers with AES-GCM (Sessions:EncryptionKey,
    /// base64). Null: stored as they are.</summary>
    public byte[]? StoreEncryptionKey { get; init; }
    /// <summary>Most states kept on disk (Sessions:MaxStoredStates); the oldest go first. 0: no limit.</summary>
    public int MaxStoredStates { get; init; } = 100_000;
    /// <summary>Stored states older than this are not used (Sessions:TimeToLive). Null: no limit.</summary>
    public TimeSpan? StateTimeToLive { get; init; }
    /// <summary>Also park a copy of the state at the end of each prompt (the turn boundary).</summary>
    public bool SnapshotAtPromptEnd { get; init; } = true;

    /// <summary>The number of slots for a given per-sequence state size, and how it was chosen.</summary>
    /// <param name="device">free/total memory of the model's GPU, null on the CPU.</param>
    public (int Slots, string Reason) ResolveSlots(long bytesPerSequence, RecurrentGemma.Model.DeviceMemory.Info? device = null)
    {
        if (MaxSlots is { } n) return n > 0 ? (n, "Engine:MaxSlots") : throw new ArgumentException("Engine:MaxSlots must be positive");
        if (StateMemoryMiB is { } mib)
        {
            long slots = mib * 1024L * 1024L / bytesPerSequence;
            return slots >= 1 ? ((int)Math.Min(slots, 1 << 16), $"Engine:StateMemoryMiB = {mib}")
                : throw new ArgumentException($"Engine:StateMemoryMiB ({mib} MiB) is smaller than one state ({bytesPerSequence / 1048576.0:F1} MiB)");
        }
        if (device is { } d)
        {
            if (DeviceMemoryFraction is <= 0 or > 1) throw new ArgumentException("Engine:DeviceMemoryFraction must be in (0, 1]");
            // What the fraction allows beyond what is already used (weights), less room for a
            // step's activations (a 512-token prefill of a 9B model stays well under 1 GiB).
            long budget = (long)(d.TotalBytes * DeviceMemoryFraction) - (d.TotalBytes - d.FreeBytes) - (1L << 30);
            long slots = budget / bytesPerSequence;
            return slots >= 1 ? ((int)Math.Min(slots, 1 << 16), string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{DeviceMemoryFraction * 100:F0}% of {d.TotalBytes / 1073741824.0:F1} GiB device memory, {d.FreeBytes / 1073741824.0:F1} GiB free after the weights"))
                : throw new ArgumentException($"no state slot fits in Engine:DeviceMemoryFraction = {DeviceMemoryFraction} of the device ({d.FreeBytes / 1048576} MiB free); lower the model size or raise the fraction");
        }
        return (DefaultSlots, "default (set Engine:MaxSlots or Engine:StateMemoryMiB)");
    }
}
