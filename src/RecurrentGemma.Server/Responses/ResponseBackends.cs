namespace RecurrentGemma.Server.Responses;

// The places a ResponseStore keeps its records: process memory, a private directory, or Redis.

/// <summary>Where stored responses' records live: process memory, a private directory, or Redis.</summary>
public interface IResponseBackend : IDisposable
{
    void Put(string key, byte[] value, TimeSpan? timeToLive);
    byte[]? Get(string key);
    /// <summary><see cref="Get"/> without holding a thread while Redis answers (for loops on timers).</summary>
    Task<byte[]?> GetAsync(string key);
    bool Delete(string key);
    /// <summary>Takes the lock on a key for <paramref name="hold"/> at most; false when another token holds it.</summary>
    bool TryLock(string key, string token, TimeSpan hold);
    /// <summary>Lets go of the lock if <paramref name="token"/> still holds it.</summary>
    void Unlock(string key, string token);
    /// <summary>Holds the lock <paramref name="hold"/> longer from now, if <paramref name="token"/> still
    /// holds it. Asynchronous: it runs on a timer, where a blocking call to Redis would hold a
    /// thread-pool thread that the reply itself needs.</summary>
    Task<bool> ExtendLockAsync(string key, string token, TimeSpan hold);
}

/// <summary>
/// Lists of items every replica reads (a backend shared between processes: Redis): a background
/// response's stream events, so any replica can resume a stream.
/// </summary>
public interface ISharedLists
{
    /// <summary>Appends the items in order; the list expires <paramref name="keep"/> after its last append.</summary>
    Task AppendAsync(string key, IReadOnlyList<byte[]> items, TimeSpan keep);
    /// <summary>The items from index <paramref name="from"/> to <paramref name="to"/> (−1: the last), empty when there are none or no list.</summary>
    Task<byte[][]> ReadAsync(string key, long from, long to);
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

    public bool ExtendLock(string key, string token, TimeSpan hold)
    {
        lock (_held)
        {
            if (!_held.TryGetValue(key, out var h) || h.Token != token || h.Until <= DateTimeOffset.UtcNow) return false;
            _held[key] = (token, DateTimeOffset.UtcNow + hold);
            return true;
        }
    }
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

    public Task<byte[]?> GetAsync(string key) => Task.FromResult(Get(key));
    public bool TryLock(string key, string token, TimeSpan hold) => _locks.TryLock(key, token, hold);
    public void Unlock(string key, string token) => _locks.Unlock(key, token);
    public Task<bool> ExtendLockAsync(string key, string token, TimeSpan hold) => Task.FromResult(_locks.ExtendLock(key, token, hold));
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

    public Task<byte[]?> GetAsync(string key) => Task.FromResult(Get(key));
    public bool TryLock(string key, string token, TimeSpan hold) => _locks.TryLock(key, token, hold);
    public void Unlock(string key, string token) => _locks.Unlock(key, token);
    public Task<bool> ExtendLockAsync(string key, string token, TimeSpan hold) => Task.FromResult(_locks.ExtendLock(key, token, hold));
    public void Dispose() { }
}

/// <summary>Records as Redis strings (rg:resp:{key}) with Redis's own expiry, shared by every replica.</summary>
sealed class RedisResponseBackend : IResponseBackend, ISharedLists
{
    internal const int MinWorkerThreads = 64;
    readonly StackExchange.Redis.ConnectionMultiplexer _redis;

    public RedisResponseBackend(string configuration)
    {
        // The store's calls are synchronous, from request threads; each waits for a reply that a
        // thread-pool thread reads. With the pool's default minimum (the core count) a burst of
        // them blocks every thread, new ones come only every half second, and calls time out
        // (StackExchange.Redis's "Busy > Min" timeouts; seen in this project's parallel tests).
        // A floor of 64 worker threads keeps replies flowing.
        ThreadPool.GetMinThreads(out int workers, out int io);
        if (workers < MinWorkerThreads) ThreadPool.SetMinThreads(MinWorkerThreads, Math.Max(io, MinWorkerThreads));
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
    public async Task<byte[]?> GetAsync(string key) => (byte[]?)await _redis.GetDatabase().StringGetAsync("rg:resp:" + key);
    public bool Delete(string key)
    {
        var db = _redis.GetDatabase();
        db.KeyDelete("rg:list:" + key, StackExchange.Redis.CommandFlags.FireAndForget);   // a response's events go with it
        return db.KeyDelete("rg:resp:" + key);
    }

    public async Task AppendAsync(string key, IReadOnlyList<byte[]> items, TimeSpan keep)
    {
        if (items.Count == 0) return;
        var db = _redis.GetDatabase();
        var values = new StackExchange.Redis.RedisValue[items.Count];
        for (int i = 0; i < items.Count; i++) values[i] = items[i];
        // One round trip: the push and the expiry go out together (commands on one connection keep their order).
        var pushed = db.ListRightPushAsync("rg:list:" + key, values);
        var expiry = db.KeyExpireAsync("rg:list:" + key, keep);
        await Task.WhenAll(pushed, expiry);
    }

    public async Task<byte[][]> ReadAsync(string key, long from, long to) =>
        [.. (await _redis.GetDatabase().ListRangeAsync("rg:list:" + key, from, to)).Select(v => (byte[])v!)];
    // Redis's own lock: a key set only if absent, with an expiry, removed only by its token.
    public bool TryLock(string key, string token, TimeSpan hold) => _redis.GetDatabase().LockTake("rg:lock:" + key, token, hold);
    public void Unlock(string key, string token) => _redis.GetDatabase().LockRelease("rg:lock:" + key, token);
    public Task<bool> ExtendLockAsync(string key, string token, TimeSpan hold) => _redis.GetDatabase().LockExtendAsync("rg:lock:" + key, token, hold);
    public void Dispose() => _redis.Dispose();
}
