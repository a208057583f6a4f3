using RecurrentGemma.Model;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// Prefix lookups test each stored candidate by hash in O(1): with 100 000 states indexed under
/// one owner, the longest stored prefix of a prompt is still found, and only a real prefix.
/// </summary>
public class LookupIndexTests
{
    /// <summary>An index with no files behind it: the lookup logic alone.</summary>
    sealed class IndexOnly(List<StoredEntry> entries) : IStateBackend
    {
        public void Attach(PersistentTier tier) { }
        public Task Indexed => Task.CompletedTask;
        public void Put(StoredEntry entry, IReadOnlyList<ReadOnlyMemory<byte>> record, TimeSpan? timeToLive) => throw new NotSupportedException();
        public Stream? OpenRead(string id) => null;
        public void Delete(string id) { }
        public void Touch(StoredEntry entry, TimeSpan? timeToLive) { }
        public IReadOnlyList<StoredEntry> Candidates(string? owner, string? sessionId) => entries;
        public void Trim(int capacity) { }
        public void Dispose() { }
    }

    [Fact]
    public void Prefix_hashes_agree_with_whole_sequence_hashes()
    {
        int[] ids = [2, 106, 1645, 108, 9, 9, 9, 107];
        var prefixes = TokenHash.Prefixes(ids);
        for (int n = 0; n <= ids.Length; n++) Assert.Equal(TokenHash.Of(ids[..n]), prefixes[n]);
        Assert.NotEqual(TokenHash.Of([1, 2]), TokenHash.Of([2, 1]));
        Assert.NotEqual(TokenHash.Of([0]), TokenHash.Of([]));
    }

    [Fact]
    public void The_longest_stored_prefix_is_found_among_a_hundred_thousand()
    {
        var entries = new List<StoredEntry>();
        // Conversation k: its own seeded random ids (all share the BOS-like first id, as real ones do).
        int[] Conversation(int k) { var r = new Random(k); return [2, .. Enumerable.Range(0, 40 + k % 50).Select(_ => r.Next(3, 4000))]; }
        for (int k = 0; k < 100_000; k++) entries.Add(new StoredEntry($"e{k}", "fp", "o", null, Conversation(k), DateTimeOffset.UtcNow));
        var target = Conversation(77_777);
        // Two prefixes of the target's conversation are stored too: the longer wins.
        entries.Add(new StoredEntry("short", "fp", "o", null, target[..10], DateTimeOffset.UtcNow));
        entries.Add(new StoredEntry("long", "fp", "o", null, target[..30], DateTimeOffset.UtcNow));
        // Same length as the target prefix, one id different: never a match.
        var wrong = target[..35].ToArray(); wrong[20]++;
        entries.Add(new StoredEntry("wrong", "fp", "o", null, wrong, DateTimeOffset.UtcNow));
        using var tier = new PersistentTier(new IndexOnly(entries), "fp", GriffinState.SlotLayout(EngineHarness.FixtureModel().Config, EngineHarness.FixtureModel().DType));

        int[] prompt = [.. target, 5, 6, 7];
        Assert.Equal("e77777", tier.FindMatch(prompt, null, "o")!.Id);              // the whole earlier conversation
        Assert.Equal("long", tier.FindMatch([.. target[..33], 1], null, "o")!.Id);   // only the 30-id prefix fits
        Assert.Null(tier.FindMatch([.. target[..9], 1], null, "o"));                // nothing shorter is stored
        Assert.NotEqual("e77777", tier.FindMatch(target, null, "o")?.Id);   // a state is never the whole prompt: it must leave one id to feed
    }

    [Fact]
    public void A_state_older_than_the_time_to_live_is_never_found()
    {
        int[] ids = [2, 10, 11, 12, 13];
        var entries = new List<StoredEntry>
        {
            new("old", "fp", "o", "s", ids[..4], DateTimeOffset.UtcNow - TimeSpan.FromHours(2)),
            new("fresh", "fp", "o", "s", ids[..3], DateTimeOffset.UtcNow - TimeSpan.FromMinutes(5)),
        };
        var layout = GriffinState.SlotLayout(EngineHarness.FixtureModel().Config, EngineHarness.FixtureModel().DType);
        using var hour = new PersistentTier(new IndexOnly(entries), "fp", layout, timeToLive: TimeSpan.FromHours(1));
        Assert.Equal("fresh", hour.FindMatch(ids, "s", "o")!.Id);   // the longer one has expired
        using var day = new PersistentTier(new IndexOnly(entries), "fp", layout, timeToLive: TimeSpan.FromDays(1));
        Assert.Equal("old", day.FindMatch(ids, "s", "o")!.Id);
    }
}

/// <summary>The disk tier's capacity trims the least recently used record, where restoring counts as a use.</summary>
public sealed class DiskRecencyTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-lru-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task A_restored_record_outlives_a_newer_one_that_was_never_used()
    {
        var model = EngineHarness.FixtureModel();
        using var state = model.CreateState(1);
        var layout = GriffinState.SlotLayout(model.Config, model.DType);
        using var tier = new PersistentTier(new FileStateBackend(_dir), "fp", layout, capacity: 3);
        await tier.Scanned;
        int[] Ids(int s) => [2, 100 + s, 7];
        async Task Write(int s, long writes)
        {
            tier.Save(new HostEntry(state.ExportSlot(0), Ids(s), $"s{s}", "o"));
            for (int i = 0; i < 400 && tier.Writes < writes; i++) await Task.Delay(10);
            Assert.Equal(writes, tier.Writes);
        }
        await Write(0, 1);
        await Write(1, 2);
        await Write(2, 3);
        using (var restored = tier.Load(tier.FindMatch([.. Ids(0), 9], "s0", "o")!)) Assert.NotNull(restored);   // s0 is used again

        await Write(3, 4);   // over capacity: the least recently used goes — s1, not s0
        Assert.NotNull(tier.FindMatch([.. Ids(0), 9], "s0", "o"));
        Assert.Null(tier.FindMatch([.. Ids(1), 9], "s1", "o"));
        Assert.NotNull(tier.FindMatch([.. Ids(2), 9], "s2", "o"));
        Assert.NotNull(tier.FindMatch([.. Ids(3), 9], "s3", "o"));

        // The order survives a restart: the index is rebuilt from the files' last use.
        using var reopened = new PersistentTier(new FileStateBackend(_dir), "fp", layout, capacity: 3);
        await reopened.Scanned;
        Assert.NotNull(reopened.FindMatch([.. Ids(0), 9], "s0", "o"));
    }
}
