using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>Parked states written to disk at shutdown come back in a new engine on the same directory.</summary>
public sealed class DiskTierTests : IDisposable
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-states-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>An engine on the directory, once its background index scan is done (a request
    /// that arrives earlier simply prefills).</summary>
    EngineClient Engine(string fingerprint = "model-a")
    {
        var engine = NewEngine(new EngineOptions { MaxSlots = 4, StorePath = _dir, StateFingerprint = fingerprint, SnapshotAtPromptEnd = false });
        engine.Disk!.Scanned.Wait(TimeSpan.FromSeconds(30));
        return engine;
    }

    async Task<(int[] Next, RunResult First)> FirstTurn()
    {
        RunResult first;
        await using (var a = Engine()) first = await Run(a, Greedy([.. Prompt, 1], 4, "chat", owner: "alice"));
        return ([.. Prompt, 1, .. first.Tokens[0], 77, 78], first);
    }

    [Fact]
    public async Task A_conversation_continues_in_a_new_engine_from_the_stored_state_exactly()
    {
        var (next, first) = await FirstTurn();
        Assert.NotEmpty(Directory.GetFiles(_dir, "*.state"));
        if (!OperatingSystem.IsWindows())
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_dir));

        await using var b = Engine();
        var resumed = await Run(b, Greedy(next, 5, "chat", owner: "alice", logprobs: true));
        Assert.Equal(Prompt.Length + first.Tokens[0].Count, resumed.Usage!.CachedTokens);

        await using var fresh = NewEngine(new EngineOptions { MaxSlots = 2, ParkFinishedStates = false });
        var expected = await Run(fresh, Greedy(next, 5, logprobs: true));
        Assert.Equal(expected.Tokens[0], resumed.Tokens[0]);
        for (int i = 0; i < expected.Logprobs[0].Count; i++)
            Assert.True(Math.Abs(expected.Logprobs[0][i].Logprob - resumed.Logprobs[0][i].Logprob) < 1e-4, $"logprob {i}");
    }

    [Fact]
    public async Task Another_owner_another_model_or_a_damaged_file_means_a_plain_prefill()
    {
        var (next, _) = await FirstTurn();
        await using (var bob = Engine())
            Assert.Equal(0, (await Run(bob, Greedy(next, 2, "chat", owner: "bob"))).Usage!.CachedTokens);
        await using (var other = Engine("model-b"))
            Assert.Equal(0, (await Run(other, Greedy(next, 2, "chat", owner: "alice"))).Usage!.CachedTokens);

        // Flip one byte in every stored state (the ones just written too).
        foreach (var file in Directory.GetFiles(_dir, "*.state"))
        {
            var bytes = File.ReadAllBytes(file);
            bytes[bytes.Length / 2] ^= 0x40;
            File.WriteAllBytes(file, bytes);
        }
        await using (var c = Engine())
        {
            var r = await Run(c, Greedy(next, 2, "chat", owner: "alice"));
            Assert.Null(r.Error);
            Assert.Equal(0, r.Usage!.CachedTokens);
            Assert.True(c.Disk!.Errors >= 1);
        }
        // A truncated file too.
        foreach (var file in Directory.GetFiles(_dir, "*.state"))
            File.WriteAllBytes(file, File.ReadAllBytes(file)[..100]);
        await using (var d = Engine())
            Assert.Equal(0, (await Run(d, Greedy(next, 2, "chat", owner: "alice"))).Usage!.CachedTokens);
    }
}

/// <summary>Stored states encrypted at rest (AES-GCM): unreadable without the key, unusable with another.</summary>
public sealed class EncryptedTierTests : IDisposable
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-sealed-" + Guid.NewGuid().ToString("N"));
    static readonly byte[] KeyA = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
    static readonly byte[] KeyB = Enumerable.Range(0, 32).Select(i => (byte)(255 - i)).ToArray();

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    EngineClient Engine(byte[]? key)
    {
        var engine = NewEngine(new EngineOptions { MaxSlots = 4, StorePath = _dir, StateFingerprint = "fp", StoreEncryptionKey = key, SnapshotAtPromptEnd = false });
        engine.Disk!.Scanned.Wait(TimeSpan.FromSeconds(30));
        return engine;
    }

    [Fact]
    public async Task Sealed_states_hide_their_contents_and_open_only_with_the_same_key()
    {
        RunResult first;
        await using (var a = Engine(KeyA)) first = await Run(a, Greedy([.. Prompt, 1], 4, "secret", owner: "alice"));
        int[] next = [.. Prompt, 1, .. first.Tokens[0], 77, 78];
        foreach (var file in Directory.GetFiles(_dir, "*.state"))
        {
            var bytes = File.ReadAllBytes(file);
            Assert.True(bytes.AsSpan(0, 8).SequenceEqual("RGSEAL01"u8));
            Assert.DoesNotContain("alice", System.Text.Encoding.Latin1.GetString(bytes));   // owner and ids are sealed too
            Assert.DoesNotContain("secret", System.Text.Encoding.Latin1.GetString(bytes));
        }
        await using (var wrong = Engine(KeyB))
            Assert.Equal(0, (await Run(wrong, Greedy(next, 2, "secret", owner: "alice"))).Usage!.CachedTokens);
        await using (var none = Engine(null))
            Assert.Equal(0, (await Run(none, Greedy(next, 2, "secret", owner: "alice"))).Usage!.CachedTokens);
        await using var right = Engine(KeyA);
        Assert.True((await Run(right, Greedy(next, 2, "secret", owner: "alice"))).Usage!.CachedTokens > 0);
    }
}
