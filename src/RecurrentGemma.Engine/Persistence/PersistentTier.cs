using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// The persistent tier of parked states, over a file directory or a shared Redis
/// (<see cref="IStateBackend"/>). A record holds a JSON header (the model fingerprint, owner,
/// session, the exact consumed ids, the tensor shapes), the state tensors' bytes, and a SHA-256 of
/// all that. Records are written by a background writer: states leaving host memory, a
/// conversation's newest state as it is parked (so another replica, or a server that crashed,
/// has it), and everything parked at shutdown. A record whose fingerprint is another model's, or
/// whose checksum fails, is never used: the request prefills instead and the error is counted.
/// Thread-safe: lookups and loads run on request threads, writes on the writer.
/// </summary>
internal sealed class PersistentTier : IDisposable
{
    internal static readonly byte[] Magic = "RGSTATE1"u8.ToArray();

    readonly RecordSeal _seal;
    internal byte[] Seal(byte[] plain) => _seal.Seal(plain);
    internal byte[] Open(byte[] stored) => _seal.Open(stored);

    /// <summary>A record's header (the file backend's start-up scan): an unsealed record is read
    /// only as far as its header; a sealed one must be opened whole.</summary>
    internal StoredEntry? ParseRecord(string id, Stream stored)
    {
        using var source = Plain(stored);
        var head = new byte[Magic.Length + 4];
        if (source.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length || !head.AsSpan(0, Magic.Length).SequenceEqual(Magic)) return null;
        var headerBytes = new byte[HeaderLength(head)];
        source.ReadExactly(headerBytes);
        var h = JsonSerializer.Deserialize<Header>(headerBytes)!;
        return new StoredEntry(id, h.Fingerprint, h.Owner, h.SessionId, h.Tokens, h.Created);
    }

    /// <summary>The record as plain bytes to read from the start: an unsealed one as it is (streamed),
    /// a sealed one opened in memory (AES-GCM needs it whole).</summary>
    Stream Plain(Stream stored)
    {
        var marker = new byte[RecordSeal.MarkerLength];
        int got = stored.ReadAtLeast(marker, marker.Length, throwOnEndOfStream: false);
        bool isSealed = RecordSeal.IsSealed(marker.AsSpan(0, got));
        if (!isSealed && !_seal.Encrypts)
            return new ConcatenatedStream(new MemoryStream(marker, 0, got, writable: false), stored);
        using var all = new MemoryStream();
        all.Write(marker, 0, got);
        stored.CopyTo(all);
        return new MemoryStream(Open(all.ToArray()), writable: false);
    }

    static int HeaderLength(ReadOnlySpan<byte> head)
    {
        int n = BinaryPrimitives.ReadInt32LittleEndian(head[Magic.Length..]);
        if (n is < 2 or > 64 << 20) throw new InvalidDataException("implausible header length");
        return n;
    }

    /// <summary>A record's pieces joined into one array (a backend that stores one value, or sealing).</summary>
    internal static byte[] Join(IReadOnlyList<ReadOnlyMemory<byte>> pieces)
    {
        var all = GC.AllocateUninitializedArray<byte>(pieces.Sum(p => p.Length));
        int at = 0;
        foreach (var p in pieces) { p.Span.CopyTo(all.AsSpan(at)); at += p.Length; }
        return all;
    }

    internal sealed record Header(string Fingerprint, string? Owner, string? SessionId, int[] Tokens, long TokenCount, long[][] Shapes, DateTimeOffset Created);

    readonly IStateBackend _backend;
    readonly string _fingerprint;
    readonly TimeSpan? _timeToLive;
    readonly List<(long[] Shape, ScalarType Type)> _layout;
    // Bounded: a writer that falls behind drops new records (counted) rather than holding an
    // unbounded number of states in memory or making the engine thread wait.
    readonly System.Threading.Channels.Channel<Job> _writes =
        System.Threading.Channels.Channel.CreateBounded<Job>(new System.Threading.Channels.BoundedChannelOptions(32)
        { SingleReader = true, FullMode = System.Threading.Channels.BoundedChannelFullMode.Wait });

    /// <summary>One unit of the writer's work, in order: a state to write, or a conversation to delete.</summary>
    sealed record Job(HostEntry? Save, string? DeleteSession = null, string? Owner = null, TaskCompletionSource<int>? Done = null, int Dropped = 0);
    long _dropped;
    public long Dropped => Interlocked.Read(ref _dropped);
    readonly Task _writer;
    long _errors, _writesDone, _loads;

    readonly int _capacity;

    /// <param name="capacity">Most records kept (0: no limit); the oldest go first.</param>
    public PersistentTier(IStateBackend backend, string fingerprint, List<(long[] Shape, ScalarType Type)> layout, TimeSpan? timeToLive = null, int capacity = 0,
        byte[]? encryptionKey = null)
    {
        _seal = new RecordSeal(encryptionKey);
        _capacity = capacity;
        backend.Attach(this);
        _backend = backend;
        _fingerprint = fingerprint;
        _layout = layout;
        _timeToLive = timeToLive;
        _writer = Task.Run(WriteLoop);
    }

    public long Errors => Interlocked.Read(ref _errors);
    /// <summary>disk or redis (the restore metric's tier).</summary>
    public string Kind => _backend is RedisStateBackend ? "redis" : "disk";
    /// <summary>Raised (on any thread) with a reason for each failure: the server logs it as a
    /// warning. Never carries state contents, keys or ids.</summary>
    public event Action<string>? Failed;

    void Fail(string reason)
    {
        Interlocked.Increment(ref _errors);
        try { Failed?.Invoke(reason); } catch (Exception) { }   // a logger must not break the tier
    }
    public long Writes => Interlocked.Read(ref _writesDone);
    public long Loads => Interlocked.Read(ref _loads);
    public Task Scanned => _backend.Indexed;

    /// <summary>Queues a state to be written (the tier owns the entry from here).</summary>
    /// <param name="wait">Wait for room in the queue (shutdown) instead of dropping the record when the writer is behind.</param>
    public void Save(HostEntry entry, bool wait = false)
    {
        if (_writes.Writer.TryWrite(new Job(entry))) return;
        if (wait)
        {
            try { _writes.Writer.WriteAsync(new Job(entry)).AsTask().GetAwaiter().GetResult(); return; }
            catch (System.Threading.Channels.ChannelClosedException) { }
        }
        Interlocked.Increment(ref _dropped);
        entry.Dispose();
    }

    /// <summary>The longest stored state this prompt strictly extends (same owner and session), or
    /// null — also when the store cannot be reached (counted; the request prefills).</summary>
    public StoredEntry? FindMatch(IReadOnlyList<int> prompt, string? sessionId, string? owner)
    {
        IReadOnlyList<StoredEntry> candidates;
        try { candidates = _backend.Candidates(owner, sessionId); }
        catch (Exception e) when (IsStoreFailure(e)) { Fail($"lookup failed ({e.GetType().Name}); the turn is prefilled"); return null; }
        if (candidates.Count == 0) return null;
        // Each candidate is tested in O(1) against the prompt's prefix hashes; the longest that
        // matches is then checked id by id (a hash collision is never continued).
        var prefixes = TokenHash.Prefixes(prompt);
        var now = DateTimeOffset.UtcNow;
        var matches = new List<StoredEntry>();
        foreach (var e in candidates)
        {
            if (e.Fingerprint != _fingerprint || (_timeToLive is { } ttl && now - e.Used > ttl)) continue;
            int n = e.Tokens.Length;
            if (n < prompt.Count && prefixes[n] == e.TokensHash) matches.Add(e);
        }
        return matches.OrderByDescending(e => e.Tokens.Length).FirstOrDefault(e => TokenHash.IsPrefix(e.Tokens, prompt));
    }

    /// <summary>Reads a stored state back into host memory, or null if it is gone, truncated,
    /// corrupt, another model's, or the store is down (counted; the request prefills).</summary>
    public HostEntry? Load(StoredEntry entry)
    {
        var rows = new List<byte[]>();
        try
        {
            // Streamed: each tensor's bytes go straight from the file into a reused snapshot
            // buffer while the checksum is computed, with no whole copy of the record in between.
            using var stored = _backend.OpenRead(entry.Id) ?? throw new InvalidDataException("gone");
            using var source = Plain(stored);
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var head = new byte[Magic.Length + 4];
            if (source.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length || !head.AsSpan(0, Magic.Length).SequenceEqual(Magic))
                throw new InvalidDataException("not a state record");
            var headerBytes = new byte[HeaderLength(head)];
            Fill(source, headerBytes);
            hash.AppendData(head);
            hash.AppendData(headerBytes);
            var header = JsonSerializer.Deserialize<Header>(headerBytes)!;
            if (header.Fingerprint != _fingerprint) throw new InvalidDataException("written by another model or dtype");
            if (header.Shapes.Length != _layout.Count) throw new InvalidDataException("tensor count differs");
            for (int i = 0; i < _layout.Count; i++)
            {
                var (shape, type) = _layout[i];
                if (!header.Shapes[i].SequenceEqual(shape)) throw new InvalidDataException("tensor shapes differ");
                long n = shape.Aggregate(1L, (a, b) => a * b) * (type == ScalarType.Float32 ? 4 : 2);
                var row = Model.SnapshotBuffers.Rent(checked((int)n));
                rows.Add(row);
                Fill(source, row);
                hash.AppendData(row);
            }
            var digest = new byte[32];
            Fill(source, digest);
            if (source.ReadByte() != -1) throw new InvalidDataException("longer than its header says");
            if (!hash.GetHashAndReset().AsSpan().SequenceEqual(digest)) throw new InvalidDataException("checksum mismatch");
            Interlocked.Increment(ref _loads);
            try { _backend.Touch(entry, _timeToLive); } catch (Exception t) when (IsStoreFailure(t)) { }   // only the order of trimming is at stake
            return new HostEntry(new Model.SlotSnapshot(rows, header.TokenCount), header.Tokens, header.SessionId, header.Owner);
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or ArgumentException or CryptographicException || IsStoreFailure(e))
        {
            foreach (var row in rows) Model.SnapshotBuffers.Return(row);
            Fail($"a stored state could not be used ({e.Message}); the turn is prefilled");
            try { if (e is InvalidDataException or JsonException) _backend.Delete(entry.Id); } catch (Exception d) when (IsStoreFailure(d)) { }
            return null;
        }
    }

    static void Fill(Stream source, byte[] into)
    {
        if (source.ReadAtLeast(into, into.Length, throwOnEndOfStream: false) < into.Length) throw new InvalidDataException("truncated");
    }

    /// <summary>
    /// Deletes every stored state of one conversation. Queued behind the writes already waiting,
    /// so a state of it written just before cannot land after the delete; <paramref name="done"/>
    /// then gets <paramref name="dropped"/> plus the records deleted. Never drops the job: a
    /// delete waits for room (it runs off the engine thread's hot path: a DELETE request).
    /// </summary>
    public void DeleteSession(string sessionId, string? owner, TaskCompletionSource<int> done, int dropped)
    {
        var job = new Job(null, sessionId, owner, done, dropped);
        if (_writes.Writer.TryWrite(job)) return;
        _ = Task.Run(async () =>
        {
            try { await _writes.Writer.WriteAsync(job).ConfigureAwait(false); }
            catch (System.Threading.Channels.ChannelClosedException) { done.TrySetResult(dropped + DeleteNow(sessionId, owner)); }
        });
    }

    int DeleteNow(string sessionId, string? owner)
    {
        try
        {
            var records = _backend.Candidates(owner, sessionId);
            foreach (var r in records) _backend.Delete(r.Id);
            return records.Count;
        }
        catch (Exception e) when (IsStoreFailure(e)) { Fail($"delete failed ({e.GetType().Name})"); return 0; }
    }

    /// <summary>Removes a stored state (it was restored; its conversation's next state replaces it).</summary>
    public void Forget(StoredEntry entry)
    {
        try { _backend.Delete(entry.Id); }
        catch (Exception e) when (IsStoreFailure(e)) { Fail($"delete failed ({e.GetType().Name})"); }
    }

    static bool IsStoreFailure(Exception e) =>
        e is IOException or UnauthorizedAccessException or TimeoutException or StackExchange.Redis.RedisException;

    static string IdOf(HostEntry e) =>
        Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{e.Owner}\u0000{e.SessionId}\u0000{string.Join(',', e.Tokens)}")))[..32].ToLowerInvariant();

    async Task WriteLoop()
    {
        await foreach (var job in _writes.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            if (job.Save is not { } entry)
            {
                job.Done!.TrySetResult(job.Dropped + DeleteNow(job.DeleteSession!, job.Owner));
                continue;
            }
            try { Write(entry); Interlocked.Increment(ref _writesDone); }
            catch (Exception e) when (IsStoreFailure(e)) { Fail($"write failed ({e.GetType().Name}: {e.Message})"); }
            finally { entry.Dispose(); }
        }
    }

    void Write(HostEntry e)
    {
        var created = DateTimeOffset.UtcNow;
        var header = new Header(_fingerprint, e.Owner, e.SessionId, e.Tokens, e.Snapshot.TokenCount, _layout.Select(l => l.Shape).ToArray(), created);
        var headerBytes = JsonSerializer.SerializeToUtf8Bytes(header);
        // The record goes out in pieces — magic, header length, header, each tensor's bytes (the
        // snapshot's own arrays), then the SHA-256 of all of it — so no second copy of the state is
        // made, except when it is sealed (AES-GCM needs it whole).
        var head = new byte[Magic.Length + 4 + headerBytes.Length];
        Magic.CopyTo(head, 0);
        BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(Magic.Length), headerBytes.Length);
        headerBytes.CopyTo(head, Magic.Length + 4);
        var pieces = new List<ReadOnlyMemory<byte>> { head };
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            hash.AppendData(head);
            foreach (var row in e.Snapshot.Rows) { hash.AppendData(row); pieces.Add(row); }
            pieces.Add(hash.GetHashAndReset());
        }
        var stored = new StoredEntry(IdOf(e), _fingerprint, e.Owner, e.SessionId, e.Tokens, created);
        _backend.Put(stored, _seal.Encrypts ? [Seal(Join(pieces))] : pieces, _timeToLive);
        // A conversation keeps its two newest states along this path — the turn-boundary snapshot
        // (which a re-tokenized transcript still extends) and the final state; older ones go.
        if (e.SessionId is not null)
        {
            var older = _backend.Candidates(e.Owner, e.SessionId)
                .Where(o => o.Id != stored.Id && o.Fingerprint == _fingerprint && o.Tokens.Length < e.Tokens.Length
                    && e.Tokens.AsSpan(0, o.Tokens.Length).SequenceEqual(o.Tokens))
                .OrderByDescending(o => o.Tokens.Length).Skip(1);
            foreach (var old in older) _backend.Delete(old.Id);
        }
        if (_capacity > 0) _backend.Trim(_capacity);
    }

    /// <summary>Finishes the queued writes, then closes the backend.</summary>
    public void Dispose()
    {
        _writes.Writer.TryComplete();
        try { _writer.Wait(TimeSpan.FromSeconds(30)); } catch (AggregateException) { }
        _backend.Dispose();
    }
}
