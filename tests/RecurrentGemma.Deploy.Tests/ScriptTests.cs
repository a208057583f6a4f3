using System.Diagnostics;

namespace RecurrentGemma.Deploy.Tests;

/// <summary>
/// The shell scripts CI and the GPU check run (.ci/run, scripts/*.sh) parse as bash: the GPU
/// scripts run only on machines this repository's CI never sees, so a typo would otherwise first
/// show there, on borrowed device time.
/// </summary>
public class ScriptTests
{
    public static TheoryData<string> Scripts()
    {
        var root = RepoRoot.Path;
        var data = new TheoryData<string> { ".ci/run" };
        foreach (var f in Directory.GetFiles(Path.Combine(root, "scripts"), "*.sh").Order(StringComparer.Ordinal))
            data.Add(Path.GetRelativePath(root, f));
        return data;
    }

    [Theory, MemberData(nameof(Scripts))]
    public void The_script_parses_as_bash(string script)
    {
        var psi = new ProcessStartInfo("bash", ["-n", script]) { WorkingDirectory = RepoRoot.Path, RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var errors = p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), $"bash -n {script} did not finish");
        Assert.True(p.ExitCode == 0, $"bash -n {script}:\n{errors}");
    }
}
