using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using RecurrentGemma.Engine;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.Responses;

/// <summary>Where stored responses' records live: process memory, a private directory, or Redis.</summary>
public interface IResponseBackend : IDisposable
{
    void Put(string key, byte[] value, TimeSpan? timeToLive);
    byte[]? Get(string key);
    bool Delete(string key);
    /// <summary>Takes the lock on a key for <paramref name="hold"/> at most; false when another token holds it.</summary>
    bool TryLock(string key, string token, TimeSpan hold);
    /// <summary>Lets go of the lock if <paramref name="token"/> still holds it.</summary>
    void Unlock(string key, string token);
}

/// <summary>Locks for the backends that live in one process (memory, a private directory).</summary>
sealed class ProcessLocks
{
    readonly Dictionary<string, (string Token, DateTimeOffset Until)> _held = [];

    public bool TryLock(string key, string token, TimeSpan hold)
    {
        lock (_held)
        {
            if (_held.TryGetValue(key, out var h) && h.Until > DateTimeOffset.UtcNow) return false;
            _held[key] = (token, DateTimeOffset.UtcNow + hold);
            return true;
        }
    }

    public void Unlock(string key, string token)
    {
        lock (_held)
        {
            if (_held.TryGetValue(key, out var h) && h.Token == token) _held.Remove(key);
        }
    }
}

/// <summary>The store cannot be reached (Redis down, disk failing): a 503, the request may be retried.</summary>
public sealed class ResponseStoreUnavailableException(Exception inner) : Exception("the response store is unavailable", inner);

/// <summary>
/// Stored responses — the object as returned plus its transcript — and conversations, keyed by owner and id: a key
/// is a hash of both, so another API key's lookup simply finds nothing (404). It sits beside the
/// state store: with Sessions:Path the records are files under "responses/" there, with
/// Sessions:Store=redis they are Redis keys shared by every replica, otherwise they live in
/// process memory (Responses:MaxStored, oldest first out). Records are sealed with
/// Sessions:EncryptionKey when one is set and expire after Sessions:TimeToLive.
/// </summary>
public sealed class ResponseStore : IDisposable
{
    readonly IResponseBackend _backend;
    readonly RecordSeal _seal;
    readonly TimeSpan? _timeToLive;
    readonly ILogger<ResponseStore> _log;

    public ResponseStore(IOptions<SessionsOptions> sessions, IOptions<ResponsesOptions> responses, ILogger<ResponseStore> log)
    {
        var s = sessions.Value;
        _log = log;
        _timeToLive = s.TimeToLive;
        _seal = new RecordSeal(string.IsNullOrWhiteSpace(s.EncryptionKey) ? null : Convert.FromBase64String(s.EncryptionKey.Trim()));
        _backend = s.Store?.Equals("redis", StringComparison.OrdinalIgnoreCase) == true && !string.IsNullOrWhiteSpace(s.Redis)
            ? new RedisResponseBackend(s.Redis)
            : !string.IsNullOrWhiteSpace(s.Path) ? new FileResponseBackend(Path.Combine(s.Path, "responses"))
            : new MemoryResponseBackend(Math.Max(1, responses.Value.MaxStored));
        Kind = _backend switch { RedisResponseBackend => "redis", FileResponseBackend => "disk", _ => "memory" };
    }

    /// <summary>memory, disk or redis.</summary>
    public string Kind { get; }

    static string Key(string? owner, string id) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{owner}\u0000{id}")))[..40].ToLowerInvariant();

    // Every record starts with its expiry (Unix ms, little-endian; 0: never), so each backend's
    // records expire the same way; a file directory is also swept of expired ones now and then.
    const int ExpiryBytes = 8;
    int _puts;

    public void Put(string? owner, StoredResponse response) =>
        PutRecord(owner, response.Response.Id, JsonSerializer.SerializeToUtf8Bytes(response, ResponsesJson.Default.StoredResponse));

    /// <summary>Stores a conversation under its id (beside the responses, sealed and expiring the same way).</summary>
    public void Put(string? owner, StoredConversation conversation) =>
        PutRecord(owner, conversation.Conversation.Id, JsonSerializer.SerializeToUtf8Bytes(conversation, ConversationsJson.Default.StoredConversation));

    void PutRecord(string? owner, string id, byte[] json)
    {
        var sealedJson = _seal.Seal(json);
        var record = new byte[ExpiryBytes + sealedJson.Length];
        long expires = _timeToLive is { } ttl ? (DateTimeOffset.UtcNow + ttl).ToUnixTimeMilliseconds() : 0;
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(record, expires);
        sealedJson.CopyTo(record, ExpiryBytes);
        Guard(() =>
        {
            _backend.Put(Key(owner, id), record, _timeToLive);
            if (_backend is FileResponseBackend files && _timeToLive is not null && Interlocked.Increment(ref _puts) % 256 == 0) files.Sweep(r => Expired(r));
            return 0;
        });
    }

    static bool Expired(ReadOnlySpan<byte> record)
    {
        if (record.Length < ExpiryBytes) return true;   // damaged: nothing to keep
        long expires = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(record);
        return expires != 0 && DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() > expires;
    }

    /// <summary>The stored response, or null when there is none for this owner (or it cannot be read).</summary>
    public StoredResponse? Get(string? owner, string id) => GetRecord(owner, id, ResponsesJson.Default.StoredResponse);

    /// <summary>The stored conversation, or null when there is none for this owner.</summary>
    public StoredConversation? GetConversation(string? owner, string id) => GetRecord(owner, id, ConversationsJson.Default.StoredConversation);

    T? GetRecord<T>(string? owner, string id, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        var key = Key(owner, id);
        var stored = Guard(() => _backend.Get(key));
        if (stored is null) return null;
        if (Expired(stored))
        {
            Guard(() => _backend.Delete(key));
            return null;
        }
        try { return JsonSerializer.Deserialize(_seal.Open(stored[ExpiryBytes..]), type); }
        catch (Exception e) when (e is InvalidDataException or JsonException)
        {
            // Another key's record, or a damaged one: it is not there for this server.
            _log.LogWarning("A stored record could not be read ({Reason}); it is treated as missing", e.Message);
            return null;
        }
    }

    public bool Delete(string? owner, string id) => Guard(() => _backend.Delete(Key(owner, id)));

    /// <summary>Holds the record <paramref name="id"/> for one writer at a time (every replica, with
    /// Redis); null when another holds it. Dispose to let go. A holder that dies lets go after
    /// <paramref name="hold"/>.</summary>
    public IDisposable? TryLock(string? owner, string id, TimeSpan hold)
    {
        string key = Key(owner, id), token = Guid.NewGuid().ToString("N");
        if (!Guard(() => _backend.TryLock(key, token, hold))) return null;
        return new Held(this, key, token);
    }

    sealed class Held(ResponseStore store, string key, string token) : IDisposable
    {
        int _released;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 1) return;
            try { store._backend.Unlock(key, token); }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
            {
                store._log.LogWarning("A record's lock could not be let go ({Error}); it lapses by itself", e.GetType().Name);
            }
        }
    }

    T Guard<T>(Func<T> operation)
    {
        try { return operation(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TimeoutException or StackExchange.Redis.RedisException)
        {
            _log.LogWarning("The response store failed: {Error}", e.GetType().Name);
            throw new ResponseStoreUnavailableException(e);
        }
    }

    public void Dispose() => _backend.Dispose();
}

/// <summary>"Responses" section.</summary>
public sealed class ResponsesOptions
{
    /// <summary>Stored responses and conversations kept in process memory (when there is no Sessions:Path or Redis).</summary>
    public int MaxStored { get; set; } = 10_000;
}

/// <summary>Records in process memory; the oldest go first beyond the capacity. A deleted or
/// replaced record leaves nothing behind (the order list holds only live keys).</summary>
sealed class MemoryResponseBackend(int capacity) : IResponseBackend
{
    readonly Dictionary<string, (byte[] Value, DateTimeOffset? Expires, LinkedListNode<string> Node)> _records = [];
    readonly LinkedList<string> _order = new();
    readonly object _gate = new();

    readonly ProcessLocks _locks = new();

    public int Count { get { lock (_gate) return _records.Count; } }
    /// <summary>Keys in the eviction order (always equal to <see cref="Count"/>: no stale keys).</summary>
    public int OrderLength { get { lock (_gate) return _order.Count; } }

    public void Put(string key, byte[] value, TimeSpan? timeToLive)
    {
        lock (_gate)
        {
            if (_records.Remove(key, out var old)) _order.Remove(old.Node);
            _records[key] = (value, DateTimeOffset.UtcNow + timeToLive, _order.AddLast(key));
            while (_records.Count > capacity)
            {
                _records.Remove(_order.First!.Value);
                _order.RemoveFirst();
            }
        }
    }

    public byte[]? Get(string key)
    {
        lock (_gate)
        {
            if (!_records.TryGetValue(key, out var r)) return null;
            if (r.Expires is null || r.Expires > DateTimeOffset.UtcNow) return r.Value;
            _records.Remove(key);   // expired: gone for good
            _order.Remove(r.Node);
            return null;
        }
    }

    public bool Delete(string key)
    {
        lock (_gate)
        {
            if (!_records.Remove(key, out var r)) return false;
            _order.Remove(r.Node);
            return true;
        }
    }

    public bool TryLock(string key, string token, TimeSpan hold) => _locks.TryLock(key, token, hold);
    public void Unlock(string key, string token) => _locks.Unlock(key, token);
    public void Dispose() { }
}

/// <summary>Records as files in a private directory (0700, files 0600), written under a temporary
/// name and renamed into place, so a reader never sees half a record.</summary>
sealed class FileResponseBackend : IResponseBackend
{
    readonly string _dir;
    // The directory is this process's own (Sessions:Path is per replica), so its locks are too.
    readonly ProcessLocks _locks = new();

    public FileResponseBackend(string directory)
    {
        _dir = Path.GetFullPath(directory);
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(_dir);
        else Directory.CreateDirectory(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    string FileOf(string key) => Path.Combine(_dir, key + ".json");

    public void Put(string key, byte[] value, TimeSpan? timeToLive)
    {
        var file = FileOf(key);
        var temp = file + ".tmp-" + Guid.NewGuid().ToString("N");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var f = new FileStream(temp, options)) f.Write(value);
        File.Move(temp, file, overwrite: true);
    }

    public byte[]? Get(string key)
    {
        var file = FileOf(key);
        try { return File.ReadAllBytes(file); }
        catch (FileNotFoundException) { return null; }
    }

    public bool Delete(string key)
    {
        var file = FileOf(key);
        if (!File.Exists(file)) return false;
        File.Delete(file);
        return true;
    }

    /// <summary>Deletes the records whose first bytes say they have expired (read 8 bytes each).</summary>
    public void Sweep(Func<byte[], bool> expired)
    {
        var head = new byte[8];
        foreach (var file in Directory.EnumerateFiles(_dir, "*.json"))
        {
            try
            {
                int n;
                using (var f = File.OpenRead(file)) n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
                if (expired(head[..n])) File.Delete(file);
            }
            catch (IOException) { }   // written or deleted meanwhile: the next sweep sees it
        }
    }

    public bool TryLock(string key, string token, TimeSpan hold) => _locks.TryLock(key, token, hold);
    public void Unlock(string key, string token) => _locks.Unlock(key, token);
    public void Dispose() { }
}

/// <summary>Records as Redis strings (rg:resp:{key}) with Redis's own expiry, shared by every replica.</summary>
sealed class RedisResponseBackend : IResponseBackend
{
    readonly StackExchange.Redis.ConnectionMultiplexer _redis;

    public RedisResponseBackend(string configuration)
    {
        var options = StackExchange.Redis.ConfigurationOptions.Parse(configuration);
        options.AbortOnConnectFail = false;
        options.ConnectTimeout = 2000;
        options.SyncTimeout = 2000;
        _redis = StackExchange.Redis.ConnectionMultiplexer.Connect(options);
    }

    public void Put(string key, byte[] value, TimeSpan? timeToLive)
    {
        var db = _redis.GetDatabase();
        bool stored = timeToLive is { } ttl ? db.StringSet("rg:resp:" + key, value, ttl) : db.StringSet("rg:resp:" + key, value);
        if (!stored) throw new IOException("Redis did not store the response");
    }

    public byte[]? Get(string key) => (byte[]?)_redis.GetDatabase().StringGet("rg:resp:" + key);
    public bool Delete(string key) => _redis.GetDatabase().KeyDelete("rg:resp:" + key);
    // Redis's own lock: a key set only if absent, with an expiry, removed only by its token.
    public bool TryLock(string key, string token, TimeSpan hold) => _redis.GetDatabase().LockTake("rg:lock:" + key, token, hold);
    public void Unlock(string key, string token) => _redis.GetDatabase().LockRelease("rg:lock:" + key, token);
    public void Dispose() => _redis.Dispose();
}
