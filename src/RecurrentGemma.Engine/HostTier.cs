using RecurrentGemma.Model;

namespace RecurrentGemma.Engine;

/// <summary>A parked state demoted to host memory: its copy and exactly the ids it consumed.</summary>
internal sealed class HostEntry(SlotSnapshot snapshot, int[] tokens, string? sessionId, string? owner) : IDisposable
{
    public SlotSnapshot Snapshot { get; } = snapshot;
    public int[] Tokens { get; } = tokens;
    /// <summary><see cref="TokenHash.Of"/> the ids: tested against a prompt in O(1).</summary>
    public ulong TokensHash { get; } = TokenHash.Of(tokens);
    public string? SessionId { get; } = sessionId;
    public string? Owner { get; } = owner;
    public long LastUsed { get; set; }
    public void Dispose() => Snapshot.Dispose();
}

/// <summary>
/// The second tier of parked states: when the device pool evicts one, it is copied here
/// (Sessions:HostMemoryMiB) instead of being dropped, and a later prompt that extends it is
/// restored into a slot — a copy back, far cheaper than prefilling the conversation again.
/// Same matching rules as the pool (same owner and session, strictly shorter exact prefix,
/// longest first); least recently used goes first when over budget, and an owner keeps at most
/// its cap here too. Entries are grouped by owner, so a lookup scans only the caller's states.
/// Owned by the engine thread.
/// </summary>
/// <param name="spill">Takes the entries evicted from here (the persistent tier); null: they are dropped.</param>
internal sealed class HostTier(long budgetBytes, int maxPerOwner, Action<HostEntry>? spill = null) : IDisposable
{
    readonly Dictionary<string, List<HostEntry>> _byOwner = [];
    long _clock;

    public long Bytes { get; private set; }
    public int Count { get; private set; }
    public long Demotions { get; private set; }
    public long Restores { get; private set; }
    public long Dropped { get; private set; }

    static string Key(string? owner) => owner ?? "";

    /// <summary>Keeps a copy of a parked state; false (nothing kept) when it cannot fit at all.</summary>
    public bool Add(HostEntry entry)
    {
        if (entry.Snapshot.Bytes > budgetBytes) { Drop(entry); return false; }
        entry.LastUsed = ++_clock;
        var list = _byOwner.TryGetValue(Key(entry.Owner), out var l) ? l : _byOwner[Key(entry.Owner)] = [];
        // One conversation keeps its newest state here: an older one of the same session goes.
        if (entry.SessionId is not null)
            foreach (var old in list.Where(e => e.SessionId == entry.SessionId).ToList()) Remove(list, old, superseded: true);
        list.Add(entry);
        Bytes += entry.Snapshot.Bytes;
        Count++;
        Demotions++;
        if (maxPerOwner > 0 && entry.Owner is not null)
            while (list.Count > maxPerOwner) Remove(list, list.MinBy(e => e.LastUsed)!);
        while (Bytes > budgetBytes)
        {
            var victim = _byOwner.Values.SelectMany(v => v).MinBy(e => e.LastUsed)!;
            Remove(_byOwner[Key(victim.Owner)], victim);
        }
        return true;
    }

    /// <summary>The longest state here that this prompt strictly extends (same owner and session).</summary>
    public HostEntry? FindMatch(IReadOnlyList<int> prompt, string? sessionId, string? owner, int longerThan)
    {
        if (!_byOwner.TryGetValue(Key(owner), out var list) || list.Count == 0) return null;
        var prefixes = TokenHash.Prefixes(prompt);
        HostEntry? best = null;
        foreach (var e in list)
        {
            if (e.SessionId != sessionId || e.Owner != owner) continue;
            int n = e.Tokens.Length;
            if (n >= prompt.Count || n <= longerThan || (best is not null && n <= best.Tokens.Length)) continue;
            // O(1) by hash, then confirmed id by id (only when the hash agrees).
            if (prefixes[n] == e.TokensHash && TokenHash.IsPrefix(e.Tokens, prompt)) best = e;
        }
        return best;
    }

    /// <summary>Takes an entry out to restore it (the caller disposes it after the copy).</summary>
    public HostEntry Take(HostEntry entry)
    {
        var list = _byOwner[Key(entry.Owner)];
        if (!list.Remove(entry)) throw new InvalidOperationException("that state is no longer in host memory");
        Bytes -= entry.Snapshot.Bytes;
        Count--;
        Restores++;
        return entry;
    }

    /// <summary>Forgets one conversation's states here (deleted by its owner); how many.</summary>
    public int DropSession(string sessionId, string? owner)
    {
        if (!_byOwner.TryGetValue(Key(owner), out var list)) return 0;
        var mine = list.Where(e => e.SessionId == sessionId && e.Owner == owner).ToList();
        foreach (var e in mine) Remove(list, e, superseded: true);
        return mine.Count;
    }

    void Remove(List<HostEntry> list, HostEntry e, bool superseded = false)
    {
        list.Remove(e);
        Bytes -= e.Snapshot.Bytes;
        Count--;
        if (superseded) { Dropped++; e.Dispose(); }
        else Drop(e);
    }

    void Drop(HostEntry e)
    {
        Dropped++;
        if (spill is not null) spill(e);
        else e.Dispose();
    }

    /// <summary>Every entry, handed over (to be written out at shutdown).</summary>
    public List<HostEntry> TakeAll()
    {
        var all = _byOwner.Values.SelectMany(v => v).ToList();
        _byOwner.Clear();
        Bytes = 0;
        Count = 0;
        return all;
    }

    public void Dispose()
    {
        foreach (var e in _byOwner.Values.SelectMany(v => v)) e.Dispose();
        _byOwner.Clear();
        Bytes = 0;
        Count = 0;
    }
}
