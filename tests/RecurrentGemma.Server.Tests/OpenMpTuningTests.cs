namespace RecurrentGemma.Server.Tests;

/// <summary>
/// The server sets libgomp's spin count before libtorch loads (Model/OpenMpTuning.cs) and runs
/// with one malloc arena (Model/MemoryTuning.cs), and a choice the operator made in the
/// environment wins. Checked in the real process: only its first
/// statements run before libtorch loads, which the in-memory host never executes.
/// </summary>
public class OpenMpTuningTests
{
    // The default (the count set at start-up) is asserted in SigtermTests' server process, which
    // starts anyway: one more real server here, not two, keeps the parallel test load down.
    [Theory]
    [InlineData("123", null, "GOMP_SPINCOUNT=123 from the environment")]
    public async Task The_server_logs_the_spin_count_libgomp_will_read(string? spinCount, string? waitPolicy, string expected)
    {
        if (!OperatingSystem.IsLinux()) return;
        // The same server shows that an arena count the operator chose is left as it is.
        await using var server = await ServerProcess.StartAsync(environment: new Dictionary<string, string?>
        {
            ["GOMP_SPINCOUNT"] = spinCount, ["OMP_WAIT_POLICY"] = waitPolicy, ["RGEMMA_GOMP_SPINCOUNT"] = null,
            ["GLIBC_TUNABLES"] = "glibc.malloc.arena_max=2", ["RGEMMA_MALLOC_TUNING"] = null,
        });
        // Ready comes a moment before the start-up lines are logged and read back: wait for them.
        for (int i = 0; i < 100 && !server.Log.Contains("C heap:"); i++) await Task.Delay(100);
        Assert.Contains("libtorch's OpenMP threads: " + expected, server.Log);
        Assert.Contains("C heap: heap kept (mmap off, no trim), glibc.malloc.arena_max=2 from the environment", server.Log);
    }

    [Fact]
    public async Task With_the_tuning_off_the_server_keeps_glibc_s_arenas_and_does_not_re_run_itself()
    {
        if (!OperatingSystem.IsLinux()) return;
        await using var server = await ServerProcess.StartAsync(environment: new Dictionary<string, string?>
        {
            ["GLIBC_TUNABLES"] = null, ["RGEMMA_MALLOC_TUNING"] = "0",
        });
        for (int i = 0; i < 100 && !server.Log.Contains("C heap:"); i++) await Task.Delay(100);
        Assert.Contains("C heap: glibc's default heap, glibc's arenas (RGEMMA_MALLOC_TUNING=0)", server.Log);
        var environ = (await File.ReadAllTextAsync($"/proc/{server.Process.Id}/environ")).Split('\0');
        Assert.DoesNotContain(environ, v => v.StartsWith("GLIBC_TUNABLES=", StringComparison.Ordinal));
    }
}
