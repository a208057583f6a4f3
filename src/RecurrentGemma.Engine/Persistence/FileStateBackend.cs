using System.Collections.Concurrent;
using System.Text.Json;

namespace RecurrentGemma.Engine;

/// <summary>
/// Records as files in a private directory (created 0700, files 0600), each written to a
/// temporary name and renamed into place, so a reader never sees half a record. The index of
/// headers lives in memory, grouped by owner and session (a lookup reads only that
/// conversation's records), and is rebuilt from the files by a background scan at start-up.
/// </summary>
internal sealed class FileStateBackend : IStateBackend
{
    readonly string _dir;
    readonly ConcurrentDictionary<(string?, string?), ConcurrentDictionary<string, StoredEntry>> _index = new();
    readonly ConcurrentDictionary<string, (string?, string?)> _groupOf = new();

    void Index(StoredEntry e)
    {
        _index.GetOrAdd((e.Owner, e.SessionId), _ => new())[e.Id] = e;
        _groupOf[e.Id] = (e.Owner, e.SessionId);
    }

    readonly TaskCompletionSource _attached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    PersistentTier? _tier;

    public FileStateBackend(string directory)
    {
        _dir = Path.GetFullPath(directory);
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(_dir);
        else Directory.CreateDirectory(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Indexed = _attached.Task.ContinueWith(_ => Scan(), TaskScheduler.Default);
    }

    public void Attach(PersistentTier tier)
    {
        _tier = tier;
        _attached.TrySetResult();
    }

    public Task Indexed { get; }
    public long ScanErrors;

    string FileOf(string id) => Path.Combine(_dir, id + ".state");

    public void Put(StoredEntry entry, IReadOnlyList<ReadOnlyMemory<byte>> record, TimeSpan? timeToLive)
    {
        var file = FileOf(entry.Id);
        var temp = file + ".tmp-" + Guid.NewGuid().ToString("N");
        // Unbuffered: the pieces are large and go straight to the file.
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 0 };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var f = new FileStream(temp, options))
        {
            foreach (var piece in record) f.Write(piece.Span);
            // No fsync per record: a record lost or cut short by a power failure fails its
            // checksum and that turn prefills; syncing every park would make the writer, not the
            // model, the bottleneck.
        }
        File.Move(temp, file, overwrite: true);
        Index(entry);
    }

    public Stream? OpenRead(string id)
    {
        try { return new FileStream(FileOf(id), new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, BufferSize = 0 }); }
        catch (FileNotFoundException) { return null; }
    }

    public void Delete(string id)
    {
        if (_groupOf.TryRemove(id, out var group) && _index.TryGetValue(group, out var entries)) entries.TryRemove(id, out _);
        try { File.Delete(FileOf(id)); } catch (IOException) { }
    }

    /// <summary>The file's modification time is its last use, so the order survives a restart.</summary>
    public void Touch(StoredEntry entry, TimeSpan? timeToLive)
    {
        var now = DateTimeOffset.UtcNow;
        try { File.SetLastWriteTimeUtc(FileOf(entry.Id), now.UtcDateTime); }
        catch (FileNotFoundException) { return; }
        if (_groupOf.TryGetValue(entry.Id, out var group) && _index.TryGetValue(group, out var entries))
            entries[entry.Id] = entry with { LastUsed = now };
    }

    public IReadOnlyList<StoredEntry> Candidates(string? owner, string? sessionId) =>
        _index.TryGetValue((owner, sessionId), out var entries) ? entries.Values.ToList() : [];

    public int Count => _groupOf.Count;

    public void Trim(int capacity)
    {
        int over = _groupOf.Count - capacity;
        if (over <= 0) return;
        foreach (var old in _index.Values.SelectMany(g => g.Values).OrderBy(e => e.Used).Take(over).ToList()) Delete(old.Id);
    }

    /// <summary>Reads every record's header (decrypting whole records when they are sealed).</summary>
    void Scan()
    {
        foreach (var file in Directory.EnumerateFiles(_dir, "*.state"))
        {
            var id = Path.GetFileNameWithoutExtension(file);
            if (_groupOf.ContainsKey(id)) continue;
            try
            {
                using var stream = File.OpenRead(file);
                if (_tier!.ParseRecord(id, stream) is { } entry) Index(entry with { LastUsed = File.GetLastWriteTimeUtc(file) });
            }
            catch (Exception e) when (e is IOException or JsonException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
            {
                Interlocked.Increment(ref ScanErrors);
            }
        }
    }

    public void Dispose() { }
}
