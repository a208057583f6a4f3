using System.Diagnostics;

namespace RecurrentGemma.Deploy.Tests;

/// <summary>
/// Docker and a cluster are not available where this builds, so the deployment files are
/// validated offline by deploy/validate/validate.mjs (Kubernetes schemas via `kubectl kustomize`
/// + kubernetes-models, the Compose specification's schema, dockerfilelint, the dashboard's
/// metric names). Its npm packages are installed on first use from deploy/validate/package-lock.json.
/// </summary>
public class DeploymentValidationTests
{
    static readonly string Root = RepoRoot.Path;
    static readonly Lazy<string?> Installed = new(InstallValidators);

    [Theory]
    [InlineData("kubernetes")]
    [InlineData("compose")]
    [InlineData("dockerfile")]
    [InlineData("dashboard")]
    [InlineData("alerts")]
    public void Deployment_files_pass_their_validator(string check)
    {
        Assert.True(Installed.Value is null, Installed.Value);
        var (code, output) = Run("node", $"deploy/validate/validate.mjs {check}", TimeSpan.FromMinutes(2));
        Assert.True(code == 0, $"{check} validation failed:\n{output}");
        Assert.Contains($"PASS {check}", output);
    }

    [Fact]
    public void The_alert_rules_pass_promtool_and_their_unit_tests()
    {
        // promtool comes with Debian's prometheus package (.ci/run installs it when missing).
        var (code, output) = Run("promtool", "check rules deploy/prometheus/alerts.yml", TimeSpan.FromMinutes(1));
        Assert.True(code == 0, output);
        Assert.Contains("SUCCESS: 8 rules found", output);
        (code, output) = Run("promtool", "test rules deploy/prometheus/alerts.test.yml", TimeSpan.FromMinutes(1));
        Assert.True(code == 0, output);
        Assert.Contains("SUCCESS", output);
    }

    [Fact]
    public void Every_overlay_renders_with_kubectl_kustomize()
    {
        foreach (var overlay in Directory.GetDirectories(Path.Combine(Root, "deploy/kubernetes/overlays")))
        {
            var (code, output) = Run("kubectl", $"kustomize {overlay}", TimeSpan.FromMinutes(1));
            Assert.True(code == 0, $"kubectl kustomize {overlay}:\n{output}");
            Assert.Contains("kind: Deployment", output);
        }
    }

    static string? InstallValidators()
    {
        if (Directory.Exists(Path.Combine(Root, "deploy/validate/node_modules/kubernetes-models"))) return null;
        var (code, output) = Run("npm", "ci --no-audit --no-fund --prefix deploy/validate", TimeSpan.FromMinutes(5));
        return code == 0 ? null : $"npm ci failed (the validators need the npm registry once):\n{output}";
    }

    static (int Code, string Output) Run(string file, string args, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = Root, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(true); return (-1, $"{file} {args} timed out"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
