using RecurrentGemma.Model;

namespace RecurrentGemma.Engine;

/// <summary>A finished state kept for reuse: the slot and exactly the ids it has consumed.</summary>
internal sealed record ParkedState(int Slot, int[] Tokens, string? SessionId, string? Owner)
{
    public long LastUsed { get; set; }
    /// <summary>Set when the state is in host memory, not in a device slot (Slot is then −1).</summary>
    public HostEntry? Host { get; init; }
    public bool OnDevice => Host is null;
}

/// <summary>
/// The pool of preallocated state slots and the table of parked states. Every slot is in exactly
/// one place: free, running (owned by a sequence) or parked. Parked states are found by session
/// id or by token prefix — only when their consumed ids are an exact, strictly shorter prefix of
/// the new prompt, and only for the same owner — and are evicted least-recently-used first when a
/// running sequence needs a slot. Owned by the engine thread; not thread-safe.
/// </summary>
internal sealed class StateStore : IDisposable
{
    /// <summary>Newest parked states kept per session: the turn-boundary snapshot and the final state.</summary>
    const int PerSession = 2;

    /// <summary>Lowest slot first: live states stay packed at the low end of the pool, so a decode
    /// batch ordered by slot reads its attention windows as few contiguous runs (no gather).</summary>
    readonly PriorityQueue<int, int> _free;
    readonly List<ParkedState> _parked = [];
    readonly int _maxParkedPerOwner;
    readonly HostTier? _host;
    readonly PersistentTier? _disk;
    long _clock;

    public GriffinState State { get; }
    public int Capacity => State.Capacity;
    public int FreeCount => _free.Count;
    public int ParkedCount => _parked.Count;
    public int UsedCount => Capacity - _free.Count - _parked.Count;
    public long Evictions { get; private set; }
    public long SessionHits { get; private set; }
    public long ReusedTokens { get; private set; }

    /// <param name="maxParkedPerOwner">Parked states one owner may hold; 0: no limit. The shared
    /// owner of requests without an API key (null) is not capped.</param>
    /// <param name="hostBytes">Host memory for states evicted from the pool (0: they are dropped).</param>
    /// <param name="disk">The persistent tier: states leaving host memory go there, and all parked
    /// states are written there when the store is disposed (shutdown).</param>
    public StateStore(GriffinForCausalLM model, int capacity, int maxParkedPerOwner = 0, long hostBytes = 0, PersistentTier? disk = null)
    {
        _maxParkedPerOwner = Math.Max(0, maxParkedPerOwner);
        _disk = disk;
        // With a persistent tier there is always a host tier: restored states come in through it.
        long perState = GriffinState.BytesPerSequence(model.Config, model.DType);
        if (disk is not null) hostBytes = Math.Max(hostBytes, 4 * perState);
        if (hostBytes > 0) _host = new HostTier(hostBytes, _maxParkedPerOwner, disk is null ? null : e => disk.Save(e));
        State = model.CreateState(capacity);
        _free = new PriorityQueue<int, int>(Enumerable.Range(0, capacity).Select(i => (i, i)));
    }

    /// <summary>Slots that could be handed out now (free, or parked and evictable).</summary>
    public int Obtainable => _free.Count + _parked.Count;

    /// <summary>A clean slot: a free one, else the least recently used parked state is evicted.</summary>
    public int? TryAcquire()
    {
        int slot;
        if (_free.Count > 0) slot = _free.Dequeue();
        else if (_parked.Count > 0)
        {
            var victim = Victim();
            _parked.Remove(victim);
            Evictions++;
            Demote(victim);
            slot = victim.Slot;
        }
        else return null;
        State.Reset(slot);   // a used state fed position 0 is not clean (docs/model.md, "Decode state")
        return slot;
    }

    public void Release(int slot) => _free.Enqueue(slot, slot);

    /// <summary>Host-memory tier figures (zeros without one).</summary>
    public (int Count, long Bytes, long Demotions, long Restores) HostTierStats =>
        _host is null ? default : (_host.Count, _host.Bytes, _host.Demotions, _host.Restores);

    /// <summary>A state read back from the persistent tier joins host memory, to be found by FindMatch.</summary>
    public void Adopt(HostEntry entry)
    {
        if (_host is null) { entry.Dispose(); return; }
        _host.Add(entry);
    }

    /// <summary>A state leaving the pool goes to host memory, if there is a host tier.</summary>
    void Demote(ParkedState p) => _host?.Add(new HostEntry(State.ExportSlot(p.Slot), p.Tokens, p.SessionId, p.Owner));

    /// <summary>The least recently used parked state of the owner holding the most parked states.</summary>
    ParkedState Victim()
    {
        var biggest = _parked.GroupBy(p => p.Owner).MaxBy(g => (g.Count(), -g.Min(p => p.LastUsed)))!;
        return biggest.MinBy(p => p.LastUsed)!;
    }

    /// <summary>How many parked states an owner holds now.</summary>
    public int ParkedBy(string? owner) => _parked.Count(p => p.Owner == owner);

    /// <summary>The parked state this prompt can continue from, if any (the longest).</summary>
    public ParkedState? FindMatch(IReadOnlyList<int> prompt, string? sessionId, string? owner)
    {
        ParkedState? best = null;
        foreach (var p in _parked)
        {
            if (p.SessionId != sessionId || p.Owner != owner) continue;
            if (p.Tokens.Length >= prompt.Count || (best is not null && p.Tokens.Length <= best.Tokens.Length)) continue;
            if (!IsPrefix(p.Tokens, prompt)) continue;
            best = p;
        }
        // A longer match in host memory beats the pool's (restoring is a copy; prefill is compute).
        if (_host?.FindMatch(prompt, sessionId, owner, best?.Tokens.Length ?? 0) is { } h)
            return new ParkedState(-1, h.Tokens, h.SessionId, h.Owner) { Host = h };
        return best;
    }

    /// <summary>Takes a parked state over for a running sequence (it will be mutated).</summary>
    public int Take(ParkedState parked)
    {
        if (parked.Host is { } h)
        {
            // Out of the tier first, so that the slot we take (which may demote another state) cannot evict it.
            using var entry = _host!.Take(h);
            var slot = TryAcquire() ?? throw new InvalidOperationException("no slot to restore into");
            State.ImportSlot(slot, entry.Snapshot);
            SessionHits++;
            ReusedTokens += parked.Tokens.Length;
            return slot;
        }
        if (!_parked.Remove(parked)) throw new InvalidOperationException("that state is no longer parked");
        SessionHits++;
        ReusedTokens += parked.Tokens.Length;
        return parked.Slot;
    }

    /// <summary>
    /// A slot holding a copy of a parked state, which stays where it is (continuing a stored
    /// response never changes it). If no other slot can be had, the state itself is continued and
    /// a copy of it goes to host memory instead.
    /// </summary>
    public int TakeCopy(ParkedState parked)
    {
        int slot;
        if (parked.Host is { } h)
        {
            // Out of the tier while a slot is found (finding one may demote another state into it).
            var entry = _host!.Take(h);
            slot = TryAcquire() ?? throw new InvalidOperationException("no slot to restore into");
            State.ImportSlot(slot, entry.Snapshot);
            _host.Add(entry);
        }
        else
        {
            if (!_parked.Remove(parked)) throw new InvalidOperationException("that state is no longer parked");
            var other = TryAcquire();   // the parent, out of the list, cannot be the victim
            if (other is { } s)
            {
                State.CopySlot(parked.Slot, s);
                parked.LastUsed = ++_clock;
                _parked.Add(parked);
                slot = s;
            }
            else
            {
                Demote(parked);
                slot = parked.Slot;
            }
        }
        SessionHits++;
        ReusedTokens += parked.Tokens.Length;
        return slot;
    }

    /// <summary>Drops every state of one conversation, in the pool and in host memory; how many.</summary>
    public int DropSession(string sessionId, string? owner)
    {
        var mine = _parked.Where(p => p.SessionId == sessionId && p.Owner == owner).ToList();
        foreach (var p in mine) { _parked.Remove(p); Release(p.Slot); }
        return mine.Count + (_host?.DropSession(sessionId, owner) ?? 0);
    }

    /// <summary>Parks a running slot's state under the ids it consumed (and the session, if any).</summary>
    public void Park(int slot, IReadOnlyList<int> tokens, string? sessionId, string? owner)
    {
        if (tokens.Count == 0) { Release(slot); return; }
        _parked.Add(new ParkedState(slot, [.. tokens], sessionId, owner) { LastUsed = ++_clock });
        // A conversation's newest state also goes to the persistent tier now (written in the
        // background), so another replica — or this server after a crash — can continue it.
        if (sessionId is not null && _disk is not null) _disk.Save(new HostEntry(State.ExportSlot(slot), [.. tokens], sessionId, owner));
        if (sessionId is not null)
        {
            var same = _parked.Where(p => p.SessionId == sessionId && p.Owner == owner).OrderByDescending(p => p.LastUsed).Skip(PerSession).ToList();
            foreach (var old in same) { _parked.Remove(old); Release(old.Slot); }
        }
        if (_maxParkedPerOwner > 0 && owner is not null)
        {
            var over = _parked.Where(p => p.Owner == owner).OrderByDescending(p => p.LastUsed).Skip(_maxParkedPerOwner).ToList();
            foreach (var old in over) { _parked.Remove(old); Demote(old); Release(old.Slot); Evictions++; }
        }
    }

    /// <summary>Parks a copy of a running slot (the turn-boundary snapshot), if a slot can be had.</summary>
    public bool TryParkCopy(int fromSlot, IReadOnlyList<int> tokens, string? sessionId, string? owner)
    {
        if (_free.Count == 0 && _parked.Count == 0) return false;
        var slot = TryAcquire()!.Value;
        State.CopySlot(fromSlot, slot);
        Park(slot, tokens, sessionId, owner);
        return true;
    }

    static bool IsPrefix(int[] prefix, IReadOnlyList<int> of)
    {
        for (int i = 0; i < prefix.Length; i++) if (prefix[i] != of[i]) return false;
        return true;
    }

    public void Dispose()
    {
        if (_disk is not null)
        {
            // Shutdown: every parked state — in the pool and in host memory — goes to disk, so a
            // restarted server (or another one on the same directory) resumes the conversations.
            foreach (var p in _parked) _disk.Save(new HostEntry(State.ExportSlot(p.Slot), p.Tokens, p.SessionId, p.Owner), wait: true);
            foreach (var e in _host!.TakeAll()) _disk.Save(e, wait: true);
            _disk.Dispose();   // waits for the writes
        }
        _host?.Dispose();
        State.Dispose();
    }
}
