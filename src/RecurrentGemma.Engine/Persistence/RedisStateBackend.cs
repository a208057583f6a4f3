using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using StackExchange.Redis;

namespace RecurrentGemma.Engine;

/// <summary>
/// Records in Redis, shared by every replica: <c>rg:state:{id}</c> holds the blob,
/// <c>rg:head:{id}</c> its header, and a set per owner and session lists the ids, so any server
/// finds any conversation. Time to live is Redis's own expiry; ids whose blob expired are
/// dropped from the set when seen. Connection loss surfaces as exceptions (the tier falls back).
/// </summary>
internal sealed class RedisStateBackend : IStateBackend
{
    readonly ConnectionMultiplexer _redis;
    readonly IDatabase _db;

    public RedisStateBackend(string configuration)
    {
        var options = ConfigurationOptions.Parse(configuration);
        options.AbortOnConnectFail = false;
        options.ConnectTimeout = 2000;
        options.SyncTimeout = 2000;
        _redis = ConnectionMultiplexer.Connect(options);
        _db = _redis.GetDatabase();
    }

    PersistentTier? _tier;

    public void Attach(PersistentTier tier) => _tier = tier;

    public Task Indexed => Task.CompletedTask;   // the index is in Redis: nothing to rebuild

    static string SetKey(string? owner, string? sessionId) =>
        "rg:set:" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{owner}\u0000{sessionId}")))[..32];

    public void Put(StoredEntry entry, IReadOnlyList<ReadOnlyMemory<byte>> record, TimeSpan? timeToLive)
    {
        var blob = PersistentTier.Join(record);   // one Redis value
        var batch = _db.CreateTransaction();
        _ = batch.StringSetAsync("rg:state:" + entry.Id, blob);
        _ = batch.StringSetAsync("rg:head:" + entry.Id, _tier!.Seal(JsonSerializer.SerializeToUtf8Bytes(entry)));
        if (timeToLive is { } expiry)
        {
            _ = batch.KeyExpireAsync("rg:state:" + entry.Id, expiry);
            _ = batch.KeyExpireAsync("rg:head:" + entry.Id, expiry);
        }
        _ = batch.SetAddAsync(SetKey(entry.Owner, entry.SessionId), entry.Id);
        if (timeToLive is { } ttl) _ = batch.KeyExpireAsync(SetKey(entry.Owner, entry.SessionId), ttl + TimeSpan.FromHours(1));
        if (!batch.Execute()) throw new IOException("the Redis transaction was not applied");
    }

    public Stream? OpenRead(string id) => (byte[]?)_db.StringGet("rg:state:" + id) is { } blob ? new MemoryStream(blob, writable: false) : null;

    public void Delete(string id)
    {
        var head = (byte[]?)_db.StringGet("rg:head:" + id);
        _db.KeyDelete(["rg:state:" + id, "rg:head:" + id]);
        if (head is not null && JsonSerializer.Deserialize<StoredEntry>(_tier!.Open(head)) is { } e) _db.SetRemove(SetKey(e.Owner, e.SessionId), id);
    }

    public IReadOnlyList<StoredEntry> Candidates(string? owner, string? sessionId)
    {
        var key = SetKey(owner, sessionId);
        var ids = _db.SetMembers(key);
        if (ids.Length == 0) return [];
        var heads = _db.StringGet(ids.Select(i => (RedisKey)("rg:head:" + i)).ToArray());
        var list = new List<StoredEntry>();
        for (int i = 0; i < ids.Length; i++)
        {
            if (heads[i].IsNull) { _db.SetRemove(key, ids[i]); continue; }   // expired
            try
            {
                if (JsonSerializer.Deserialize<StoredEntry>(_tier!.Open((byte[])heads[i]!)) is { } e) list.Add(e);
            }
            catch (Exception x) when (x is InvalidDataException or JsonException) { }   // another key's or a damaged header: not ours to use
        }
        return list;
    }

    /// <summary>A read already refreshes Redis's own LRU clock (maxmemory eviction); the time to
    /// live starts again here.</summary>
    public void Touch(StoredEntry entry, TimeSpan? timeToLive)
    {
        if (timeToLive is not { } ttl) return;
        _db.KeyExpire("rg:state:" + entry.Id, ttl, CommandFlags.FireAndForget);
        _db.KeyExpire("rg:head:" + entry.Id, ttl, CommandFlags.FireAndForget);
        _db.KeyExpire(SetKey(entry.Owner, entry.SessionId), ttl + TimeSpan.FromHours(1), CommandFlags.FireAndForget);
    }

    public void Trim(int capacity) { }   // bounded by expiry and Redis's maxmemory policy

    public void Dispose() => _redis.Dispose();
}
