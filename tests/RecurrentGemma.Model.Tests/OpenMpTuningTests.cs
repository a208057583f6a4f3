namespace RecurrentGemma.Model.Tests;

/// <summary>
/// In-process half of the spin-count setting (the server test checks the real process): the
/// value lands in the native environment libgomp reads, not only in .NET's copy of it.
/// </summary>
public class OpenMpTuningTests
{
    [Fact]
    public void Apply_writes_the_native_environment_unless_the_user_chose()
    {
        if (!OperatingSystem.IsLinux()) return;
        string? before = OpenMpTuning.Native("GOMP_SPINCOUNT");
        string? policy = OpenMpTuning.Native("OMP_WAIT_POLICY");
        string? ours = Environment.GetEnvironmentVariable("RGEMMA_GOMP_SPINCOUNT");
        bool set = OpenMpTuning.Apply();
        Assert.Equal(set, OpenMpTuning.Apply());   // once per process: a second call changes nothing
        if (before is null && policy is null && ours is null)
        {
            Assert.True(set, OpenMpTuning.Describe());
            Assert.Equal(OpenMpTuning.DefaultSpinCount, OpenMpTuning.Native("GOMP_SPINCOUNT"));
            Assert.Equal("spin count 10000 (set at start-up)", OpenMpTuning.Describe());
        }
        else if (before is not null)
        {
            Assert.False(set);
            Assert.Equal(before, OpenMpTuning.Native("GOMP_SPINCOUNT"));
            Assert.Contains("from the environment", OpenMpTuning.Describe());
        }
    }
}
