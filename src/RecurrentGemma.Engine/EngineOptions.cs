namespace RecurrentGemma.Engine;

/// <summary>Engine configuration (bound from the "Engine" section by the server).</summary>
public sealed record EngineOptions
{
    /// <summary>State slots in the pool. When null, derived from <see cref="StateMemoryMiB"/>.</summary>
    public int? MaxSlots { get; init; } = 16;
    /// <summary>Memory for state slots in MiB; slots = budget ÷ the state's bytes per sequence.</summary>
    public int? StateMemoryMiB { get; init; }
    /// <summary>Sequences decoding or prefilling at once (a request with n choices counts n).</summary>
    public int MaxRunningSequences { get; init; } = 16;
    /// <summary>Requests waiting for admission; one more is refused as overloaded (HTTP 429).</summary>
    public int MaxQueuedRequests { get; init; } = 64;
    /// <summary>Prompt tokens prefilled per engine step across all sequences, so a long prompt
    /// delays running streams by at most one chunk.</summary>
    public int PrefillTokenBudget { get; init; } = 512;
    public int MaxPromptTokens { get; init; } = 32768;
    public int MaxNewTokens { get; init; } = 4096;
    public int MaxChoices { get; init; } = 8;
    /// <summary>Keep finished states (under the session id and under their token ids) for reuse.</summary>
    public bool ParkFinishedStates { get; init; } = true;
    /// <summary>Also park a copy of the state at the end of each prompt (the turn boundary).</summary>
    public bool SnapshotAtPromptEnd { get; init; } = true;

    /// <summary>The number of slots for a given per-sequence state size.</summary>
    public int ResolveSlots(long bytesPerSequence)
    {
        if (MaxSlots is { } n) return n > 0 ? n : throw new ArgumentException("Engine:MaxSlots must be positive");
        if (StateMemoryMiB is { } mib)
        {
            long slots = mib * 1024L * 1024L / bytesPerSequence;
            return slots >= 1 ? (int)Math.Min(slots, 1 << 16)
                : throw new ArgumentException($"Engine:StateMemoryMiB ({mib} MiB) is smaller than one state ({bytesPerSequence / 1048576.0:F1} MiB)");
        }
        throw new ArgumentException("set Engine:MaxSlots or Engine:StateMemoryMiB");
    }
}
