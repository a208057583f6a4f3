using RecurrentGemma.Server.Responses;

namespace RecurrentGemma.Server.Tests;

/// <summary>The in-memory response store: bounded, oldest out first, and nothing left behind by deletes.</summary>
public class ResponseStoreUnitTests
{
    [Fact]
    public void The_memory_store_keeps_the_newest_and_deleting_leaves_nothing_behind()
    {
        var store = new MemoryResponseBackend(capacity: 3);
        for (int i = 0; i < 5; i++) store.Put($"k{i}", [(byte)i], null);
        Assert.Null(store.Get("k0"));
        Assert.Null(store.Get("k1"));
        Assert.Equal([2], store.Get("k2"));
        Assert.Equal(3, store.Count);

        // Replacing a record moves it to the newest place.
        store.Put("k2", [22], null);
        store.Put("k5", [5], null);
        Assert.Equal([22], store.Get("k2"));
        Assert.Null(store.Get("k3"));

        // A million create-and-delete cycles hold no more than the live records.
        for (int i = 0; i < 1_000_000; i++) { store.Put("tmp", [1], null); Assert.True(store.Delete("tmp")); }
        Assert.Equal(2, store.Count);
        Assert.Equal(2, store.OrderLength);
        Assert.False(store.Delete("tmp"));

        store.Put("brief", [9], TimeSpan.FromMilliseconds(-1));   // already expired
        Assert.Null(store.Get("brief"));
        Assert.Equal(2, store.Count);
        Assert.Equal(2, store.OrderLength);
    }

    [Fact]
    public void A_sweep_deletes_only_the_files_whose_records_have_expired()
    {
        var dir = Path.Combine(Path.GetTempPath(), "rg-resp-sweep-" + Guid.NewGuid().ToString("N"));
        try
        {
            var files = new FileResponseBackend(dir);
            files.Put("old", [1, 0, 0, 0, 0, 0, 0, 0, 42], null);
            files.Put("new", [2, 0, 0, 0, 0, 0, 0, 0, 43], null);
            files.Sweep(head => head[0] == 1);   // "expired" when the first byte is 1
            Assert.Null(files.Get("old"));
            Assert.NotNull(files.Get("new"));
            Assert.Single(Directory.GetFiles(dir, "*.json"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public async Task A_lock_is_held_by_one_token_until_it_lets_go_or_its_hold_lapses()
    {
        var dir = Path.Combine(Path.GetTempPath(), "rg-resp-lock-" + Guid.NewGuid().ToString("N"));
        try
        {
            foreach (IResponseBackend backend in new IResponseBackend[] { new MemoryResponseBackend(4), new FileResponseBackend(dir) })
            {
                Assert.True(backend.TryLock("k", "a", TimeSpan.FromMinutes(1)));
                Assert.False(backend.TryLock("k", "b", TimeSpan.FromMinutes(1)));
                Assert.True(backend.TryLock("other", "b", TimeSpan.FromMinutes(1)));   // one key's lock only
                backend.Unlock("k", "b");                                              // not b's to let go
                Assert.False(backend.TryLock("k", "c", TimeSpan.FromMinutes(1)));
                backend.Unlock("k", "a");
                Assert.True(backend.TryLock("k", "c", TimeSpan.FromMilliseconds(100)));
                await Task.Delay(200);                                                 // c died holding it: it lapses
                Assert.True(backend.TryLock("k", "d", TimeSpan.FromMinutes(1)));
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
