using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>What a stored state file says about itself (its header), enough to match a prompt.</summary>
internal sealed record DiskEntry(string File, string Fingerprint, string? Owner, string? SessionId, int[] Tokens, long Bytes, DateTimeOffset Created);

/// <summary>
/// The persistent tier (Sessions:Path): one file per parked state in a private directory (0700),
/// written atomically (a temporary file, then a rename) by a background writer, so a restart — or
/// another server on the same directory — resumes the conversations. A file holds a JSON header
/// (the model fingerprint, owner, session, the exact consumed ids, the tensor shapes), the state
/// tensors' bytes, and a SHA-256 of all that; a file whose fingerprint is another model's, or
/// whose checksum fails, is never used (the request prefills instead) and is counted as an error.
/// The index is rebuilt from the headers in the background at start-up, so readiness never waits
/// for a scan. Thread-safe: lookups and loads run on request threads, writes on the writer.
/// </summary>
internal sealed class DiskTier : IDisposable
{
    static readonly byte[] Magic = "RGSTATE1"u8.ToArray();

    readonly string _dir;
    readonly string _fingerprint;
    readonly TimeSpan? _timeToLive;
    readonly ConcurrentDictionary<string, DiskEntry> _index = new();
    readonly System.Threading.Channels.Channel<(HostEntry Entry, TaskCompletionSource? Done)> _writes =
        System.Threading.Channels.Channel.CreateUnbounded<(HostEntry, TaskCompletionSource?)>(new() { SingleReader = true });
    readonly Task _writer;
    readonly Task _scan;
    long _errors, _writesDone, _loads;

    readonly List<(long[] Shape, ScalarType Type)> _layout;

    public DiskTier(string directory, string fingerprint, List<(long[] Shape, ScalarType Type)> layout, TimeSpan? timeToLive = null)
    {
        _layout = layout;
        _dir = Path.GetFullPath(directory);
        _fingerprint = fingerprint;
        _timeToLive = timeToLive;
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(_dir);
        else Directory.CreateDirectory(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _scan = Task.Run(Scan);
        _writer = Task.Run(WriteLoop);
    }

    public int Count => _index.Count;
    public long Errors => Interlocked.Read(ref _errors);
    public long Writes => Interlocked.Read(ref _writesDone);
    public long Loads => Interlocked.Read(ref _loads);
    public Task Scanned => _scan;

    /// <summary>Queues a state to be written (the tier owns and disposes the entry).</summary>
    public void Save(HostEntry entry) => _writes.Writer.TryWrite((entry, null));

    /// <summary>Writes a state now-ish and waits for it (drain).</summary>
    public Task SaveAsync(HostEntry entry)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_writes.Writer.TryWrite((entry, done))) { entry.Dispose(); done.SetResult(); }
        return done.Task;
    }

    /// <summary>The longest stored state this prompt strictly extends (same owner and session).</summary>
    public DiskEntry? FindMatch(IReadOnlyList<int> prompt, string? sessionId, string? owner)
    {
        DiskEntry? best = null;
        var now = DateTimeOffset.UtcNow;
        foreach (var e in _index.Values)
        {
            if (e.Owner != owner || e.SessionId != sessionId || e.Fingerprint != _fingerprint) continue;
            if (_timeToLive is { } ttl && now - e.Created > ttl) continue;
            int n = e.Tokens.Length;
            if (n >= prompt.Count || (best is not null && n <= best.Tokens.Length)) continue;
            bool prefix = true;
            for (int i = 0; i < n && prefix; i++) prefix = e.Tokens[i] == prompt[i];
            if (prefix) best = e;
        }
        return best;
    }

    /// <summary>Reads a stored state back into host memory, or null (logged by the caller) if the
    /// file is gone, truncated, corrupt or another model's.</summary>
    public HostEntry? Load(DiskEntry entry)
    {
        try
        {
            var bytes = File.ReadAllBytes(entry.File);
            if (bytes.Length < Magic.Length + 4 + 32 || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic)) throw new InvalidDataException("not a state file");
            var body = bytes.AsSpan(0, bytes.Length - 32);
            if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - 32))) throw new InvalidDataException("checksum mismatch");
            int headerLength = BinaryPrimitives.ReadInt32LittleEndian(body[Magic.Length..]);
            var header = JsonSerializer.Deserialize<Header>(body.Slice(Magic.Length + 4, headerLength))!;
            if (header.Fingerprint != _fingerprint) throw new InvalidDataException("written by another model or dtype");
            var rows = new List<byte[]>();
            int at = Magic.Length + 4 + headerLength;
            int i = 0;
            if (header.Shapes.Length != _layout.Count) throw new InvalidDataException("tensor count differs");
            foreach (var (shape, type) in _layout)
            {
                if (!header.Shapes[i].SequenceEqual(shape)) throw new InvalidDataException("tensor shapes differ");
                long n = shape.Aggregate(1L, (a, b) => a * b) * (type == ScalarType.Float32 ? 4 : 2);
                if (at + n > body.Length) throw new InvalidDataException("truncated");
                rows.Add(body.Slice(at, (int)n).ToArray());
                at += (int)n;
                i++;
            }
            if (at != body.Length) throw new InvalidDataException("the file is longer than its header says");
            Interlocked.Increment(ref _loads);
            return new HostEntry(new SlotSnapshot(rows, header.TokenCount), header.Tokens, header.SessionId, header.Owner);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or JsonException or ArgumentException or UnauthorizedAccessException)
        {
            Interlocked.Increment(ref _errors);
            _index.TryRemove(entry.File, out _);
            return null;
        }
    }

    /// <summary>Removes a stored state (it was restored; the conversation's next state replaces it).</summary>
    public void Forget(DiskEntry entry)
    {
        _index.TryRemove(entry.File, out _);
        try { File.Delete(entry.File); } catch (IOException) { }
    }

    sealed record Header(string Fingerprint, string? Owner, string? SessionId, int[] Tokens, long TokenCount, long[][] Shapes, DateTimeOffset Created);

    string FileFor(HostEntry e)
    {
        var key = $"{e.Owner}\u0000{e.SessionId}\u0000{string.Join(',', e.Tokens)}";
        return Path.Combine(_dir, Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..32].ToLowerInvariant() + ".state");
    }

    async Task WriteLoop()
    {
        await foreach (var (entry, done) in _writes.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            try { Write(entry); Interlocked.Increment(ref _writesDone); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { Interlocked.Increment(ref _errors); }
            finally { entry.Dispose(); done?.TrySetResult(); }
        }
    }

    void Write(HostEntry e)
    {
        var file = FileFor(e);
        var header = new Header(_fingerprint, e.Owner, e.SessionId, e.Tokens, e.Snapshot.TokenCount,
            _layout.Select(l => l.Shape).ToArray(), DateTimeOffset.UtcNow);
        var headerBytes = JsonSerializer.SerializeToUtf8Bytes(header);
        using var buffer = new MemoryStream();
        buffer.Write(Magic);
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(length, headerBytes.Length);
        buffer.Write(length);
        buffer.Write(headerBytes);
        foreach (var row in e.Snapshot.Rows) buffer.Write(row);
        var hash = SHA256.HashData(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
        buffer.Write(hash);
        var temp = file + ".tmp-" + Guid.NewGuid().ToString("N");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var f = new FileStream(temp, options))
        {
            buffer.Position = 0;
            buffer.CopyTo(f);
            f.Flush(flushToDisk: true);
        }
        File.Move(temp, file, overwrite: true);
        _index[file] = new DiskEntry(file, _fingerprint, e.Owner, e.SessionId, e.Tokens, buffer.Length, header.Created);
    }

    void Scan()
    {
        var head = new byte[12];
        foreach (var file in Directory.EnumerateFiles(_dir, "*.state"))
        {
            try
            {
                using var f = File.OpenRead(file);
                if (f.Read(head) != 12 || !head.AsSpan(0, 8).SequenceEqual(Magic)) continue;
                int n = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(8));
                if (n <= 0 || n > 64 << 20) continue;
                var json = new byte[n];
                f.ReadExactly(json);
                var h = JsonSerializer.Deserialize<Header>(json)!;
                _index.TryAdd(file, new DiskEntry(file, h.Fingerprint, h.Owner, h.SessionId, h.Tokens, f.Length, h.Created));
            }
            catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { Interlocked.Increment(ref _errors); }
        }
    }

    /// <summary>Finishes the queued writes.</summary>
    public async Task FlushAsync()
    {
        _writes.Writer.TryComplete();
        await _writer.ConfigureAwait(false);
    }

    public void Dispose()
    {
        _writes.Writer.TryComplete();
        try { _writer.Wait(TimeSpan.FromSeconds(30)); } catch (AggregateException) { }
    }
}
