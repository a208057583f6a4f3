namespace RecurrentGemma.Engine;

/// <summary>What a stored state says about itself (its header): enough to match a prompt.</summary>
internal sealed record StoredEntry(string Id, string Fingerprint, string? Owner, string? SessionId, int[] Tokens, DateTimeOffset Created)
{
    /// <summary><see cref="TokenHash.Of"/> the consumed ids: a lookup tests this entry in O(1).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public ulong TokensHash { get; } = TokenHash.Of(Tokens);

    /// <summary>When it was last written or restored (null: <see cref="Created"/>). The time to
    /// live counts from here, and capacity trims the least recently used first.</summary>
    public DateTimeOffset? LastUsed { get; init; }
    [System.Text.Json.Serialization.JsonIgnore]
    public DateTimeOffset Used => LastUsed ?? Created;
}

/// <summary>
/// Where the persistent tier keeps its records: a private directory (<see cref="FileStateBackend"/>)
/// or a Redis shared by every replica (<see cref="RedisStateBackend"/>). A record is one opaque
/// blob (header, tensors, checksum: <see cref="PersistentTier"/> writes and checks it) plus its
/// header for lookups. Records are written and read as streams, so a 2B state never needs a
/// second whole copy in fresh memory. Every method may throw on I/O; the tier turns that into a
/// fallback.
/// </summary>
internal interface IStateBackend : IDisposable
{
    /// <summary>Connects the backend to its tier (which seals and parses records and headers).</summary>
    void Attach(PersistentTier tier);
    /// <summary>Completes once lookups see what was stored before this process started.</summary>
    Task Indexed { get; }
    /// <summary>Stores a record given as consecutive pieces (written in order, never joined on disk).</summary>
    void Put(StoredEntry entry, IReadOnlyList<ReadOnlyMemory<byte>> record, TimeSpan? timeToLive);
    /// <summary>The record to read from the start, or null when it is gone.</summary>
    Stream? OpenRead(string id);
    void Delete(string id);
    /// <summary>Marks a record as just used (it was restored): it is the last to be trimmed, and its
    /// time to live starts again.</summary>
    void Touch(StoredEntry entry, TimeSpan? timeToLive);
    /// <summary>The records of one owner and session (null session: the automatic prefix states).</summary>
    IReadOnlyList<StoredEntry> Candidates(string? owner, string? sessionId);
    /// <summary>Deletes the oldest records beyond this many (Redis relies on expiry and its own eviction).</summary>
    void Trim(int capacity);
}
