using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using RecurrentGemma.Engine;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.Responses;

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

    /// <summary>Stores any record under an id (ids of different kinds never collide: they carry their kind's prefix).</summary>
    public void Put<T>(string? owner, string id, T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) =>
        PutRecord(owner, id, JsonSerializer.SerializeToUtf8Bytes(value, type));

    /// <summary>A record stored with <see cref="Put{T}"/>, or null.</summary>
    public T? Get<T>(string? owner, string id, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class => GetRecord(owner, id, type);

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

    /// <summary>The stored response's status, read without holding a thread while the store answers
    /// (a background job looks five times a second whether it was cancelled); null when there is none.</summary>
    public async Task<string?> StatusAsync(string? owner, string id)
    {
        byte[]? stored;
        try { stored = await _backend.GetAsync(Key(owner, id)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TimeoutException or StackExchange.Redis.RedisException)
        {
            throw new ResponseStoreUnavailableException(e);
        }
        return stored is null || Expired(stored) ? null : Decode(stored, ResponsesJson.Default.StoredResponse)?.Response.Status;
    }

    /// <summary>The stored conversation, or null when there is none for this owner.</summary>
    public StoredConversation? GetConversation(string? owner, string id) => GetRecord(owner, id, ConversationsJson.Default.StoredConversation);

    T? GetRecord<T>(string? owner, string id, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        var key = Key(owner, id);
        var stored = Guard(() => _backend.Get(key));
        if (stored is not null && Expired(stored))
        {
            Guard(() => _backend.Delete(key));
            return null;
        }
        return Decode(stored, type);
    }

    /// <summary>A record's value: null when there is none, or it is another key's or damaged
    /// (then it is not there for this server).</summary>
    T? Decode<T>(byte[]? stored, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        if (stored is null) return null;
        try { return JsonSerializer.Deserialize(_seal.Open(stored[ExpiryBytes..]), type); }
        catch (Exception e) when (e is InvalidDataException or JsonException)
        {
            _log.LogWarning("A stored record could not be read ({Reason}); it is treated as missing", e.Message);
            return null;
        }
    }

    public bool Delete(string? owner, string id) => Guard(() => _backend.Delete(Key(owner, id)));

    /// <summary>Whether this store keeps lists every replica reads (Redis): background responses' events.</summary>
    public bool SharesLists => _backend is ISharedLists;

    /// <summary>Appends items (sealed like records) to the list under this owner and id; it expires <paramref name="keep"/> after the last append.</summary>
    public async Task AppendListAsync(string? owner, string id, IReadOnlyList<byte[]> items, TimeSpan keep)
    {
        var lists = _backend as ISharedLists ?? throw new InvalidOperationException("this store keeps no shared lists");
        var sealedItems = items.Select(i => i.Length == 0 ? i : _seal.Seal(i)).ToList();   // an empty item stays empty: a marker
        try { await lists.AppendAsync(Key(owner, id), sealedItems, keep); }
        catch (Exception e) when (e is TimeoutException or StackExchange.Redis.RedisException) { throw new ResponseStoreUnavailableException(e); }
    }

    /// <summary>The list's items from <paramref name="from"/> on (at most <paramref name="count"/>), opened
    /// (an item that cannot be read ends the list: null there).</summary>
    public async Task<List<byte[]?>> ReadListAsync(string? owner, string id, long from, long? count = null)
    {
        var lists = _backend as ISharedLists ?? throw new InvalidOperationException("this store keeps no shared lists");
        byte[][] items;
        try { items = await lists.ReadAsync(Key(owner, id), from, count is { } n ? from + n - 1 : -1); }
        catch (Exception e) when (e is TimeoutException or StackExchange.Redis.RedisException) { throw new ResponseStoreUnavailableException(e); }
        var opened = new List<byte[]?>(items.Length);
        foreach (var item in items)
        {
            try { opened.Add(item.Length == 0 ? item : _seal.Open(item)); }
            catch (InvalidDataException) { opened.Add(null); break; }   // another key's or damaged
        }
        return opened;
    }

    /// <summary>Holds the record <paramref name="id"/> for one writer at a time (every replica, with
    /// Redis); null when another holds it. Dispose to let go. A holder that dies lets go after
    /// <paramref name="hold"/>; with <paramref name="renewEvery"/> a live holder keeps renewing
    /// it, so a long hold (a response generating) can use a short <paramref name="hold"/> and a
    /// replica that dies blocks the record only that long.</summary>
    public IDisposable? TryLock(string? owner, string id, TimeSpan hold, TimeSpan? renewEvery = null)
    {
        string key = Key(owner, id), token = Guid.NewGuid().ToString("N");
        if (!Guard(() => _backend.TryLock(key, token, hold))) return null;
        return new Held(this, key, token, hold, renewEvery);
    }

    /// <summary>The record's lock for a short change, waited for up to 5 s; after that the change
    /// goes ahead without it (a holder that died lets go after <paramref name="hold"/>, a live one
    /// holds for a moment only), so a write is late at worst, never lost.</summary>
    public IDisposable LockBriefly(string? owner, string id, TimeSpan hold)
    {
        var until = DateTimeOffset.UtcNow + TimeSpan.FromSeconds(5);
        while (true)
        {
            if (TryLock(owner, id, hold) is { } held) return held;
            if (DateTimeOffset.UtcNow > until) return new NotHeld();
            Thread.Sleep(5);
        }
    }

    sealed class NotHeld : IDisposable { public void Dispose() { } }

    sealed class Held : IDisposable
    {
        readonly ResponseStore _store;
        readonly string _key, _token;
        readonly CancellationTokenSource? _stopRenewing;
        int _released;

        public Held(ResponseStore store, string key, string token, TimeSpan hold, TimeSpan? renewEvery)
        {
            (_store, _key, _token) = (store, key, token);
            if (renewEvery is not { } every) return;
            _stopRenewing = new CancellationTokenSource();
            _ = RenewAsync(hold, every, _stopRenewing.Token);
        }

        async Task RenewAsync(TimeSpan hold, TimeSpan every, CancellationToken stop)
        {
            using var timer = new PeriodicTimer(every);
            try
            {
                while (await timer.WaitForNextTickAsync(stop))
                {
                    try { await _store._backend.ExtendLockAsync(_key, _token, hold); }
                    catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
                    {
                        _store._log.LogWarning("A record's lock could not be renewed ({Error}); it is tried again shortly", e.GetType().Name);
                    }
                }
            }
            catch (OperationCanceledException) { }   // let go
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 1) return;
            _stopRenewing?.Cancel();
            _stopRenewing?.Dispose();
            try { _store._backend.Unlock(_key, _token); }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
            {
                _store._log.LogWarning("A record's lock could not be let go ({Error}); it lapses by itself", e.GetType().Name);
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
