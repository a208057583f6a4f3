using System.Diagnostics;
using System.Text;

namespace RecurrentGemma.Deploy.Tests;

/// <summary>
/// The GPU check's carried bundle, end to end on the CPU: scripts/gpu-bundle.sh packs the runtime,
/// the Release builds and xUnit's console runner; scripts/gpu-run.sh --quick unpacks it with no
/// SDK on the path and no package cache, checks the bridge's libtorch symbols, runs the reference
/// and device-step test classes from the bundle with the CPU's own paths off (the tensor ops a GPU
/// runs: <c>--tensor-path</c>) and calls the CLI. A lent GPU machine gets one
/// call of a few minutes, so a bundle that broke since it was last run by hand (a file the tests
/// need and the bundle lacks, a runtime that does not start) must fail here, not there. It runs in
/// a copy of the working tree, so the Release builds and the script's outputs stay out of it.
/// </summary>
public class GpuBundleTests
{
    [Fact]
    public async Task The_gpu_check_bundle_packs_and_runs_on_the_cpu()
    {
        var root = RepoRoot.Path;
        var torchLib = CpuLibtorch();
        var copy = Directory.CreateTempSubdirectory("rgemma-bundle-check-").FullName;
        try
        {
            var (listed, files) = await Run(root, "git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], TimeSpan.FromMinutes(1));
            Assert.True(listed == 0, "git ls-files failed: " + files);
            foreach (var file in files.Split('\0', StringSplitOptions.RemoveEmptyEntries))
            {
                var from = Path.Combine(root, file);
                if (!File.Exists(from)) continue;   // deleted in the working tree, not yet in the index
                var to = Path.Combine(copy, file);
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(from, to);
            }

            var (packed, packLog) = await Run(copy, "bash", ["scripts/gpu-bundle.sh"], TimeSpan.FromMinutes(4));
            Assert.True(packed == 0, "gpu-bundle.sh failed:\n" + Tail(packLog));
            Assert.True(new FileInfo(Path.Combine(copy, ".gpu", "bundle.tar.xz")).Length > 1 << 20, "the bundle is suspiciously small");

            var (ran, runLog) = await Run(copy, "bash", ["scripts/gpu-run.sh", "--device", "cpu", "--torch-lib", torchLib, "--quick", "--tensor-path"], TimeSpan.FromMinutes(3),
                ("OUT", Path.Combine(copy, "out")));
            Assert.True(ran == 0, "gpu-run.sh failed:\n" + Tail(runLog));
            Assert.Contains(" 0 missing", runLog);                                       // every libtorch symbol the bridge needs
            Assert.Contains("CPU paths off", runLog);                                    // the tests ran the ops a GPU runs
            Assert.Matches(@"RecurrentGemma\.Model\.Tests\s+Total: [1-9]\d*, Errors: 0, Failed: 0", runLog);
            Assert.Matches(@"RecurrentGemma\.Engine\.Tests\s+Total: [1-9]\d*, Errors: 0, Failed: 0", runLog);
            Assert.Contains("{\"logits\":[[", runLog);                                    // the bundled CLI ran a forward
        }
        finally
        {
            try { Directory.Delete(copy, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>The folder of the CPU libtorch the build restored (the bundle carries none of its own).</summary>
    static string CpuLibtorch()
    {
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var found = Directory.Exists(Path.Combine(cache, "libtorch-cpu-linux-x64"))
            ? Directory.GetDirectories(Path.Combine(cache, "libtorch-cpu-linux-x64"))
                .Select(v => Path.Combine(v, "runtimes", "linux-x64", "native"))
                .Where(d => File.Exists(Path.Combine(d, "libtorch_cpu.so")))
                .Order(StringComparer.Ordinal).LastOrDefault()
            : null;
        return found ?? throw new InvalidOperationException($"no libtorch-cpu-linux-x64 under {cache}: the build restores it");
    }

    static async Task<(int Exit, string Output)> Run(string dir, string file, string[] args, TimeSpan limit, params (string Name, string Value)[] env)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        // Builds started from a test must leave no MSBuild node or compiler server behind: those
        // keep the test host's pipes open after the build.
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        psi.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        psi.Environment["UseSharedCompilation"] = "false";
        foreach (var (name, value) in env) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var output = new StringBuilder();
        var readOut = Task.Run(async () => { while (await p.StandardOutput.ReadLineAsync() is { } l) lock (output) output.AppendLine(l); });
        var readErr = Task.Run(async () => { while (await p.StandardError.ReadLineAsync() is { } l) lock (output) output.AppendLine(l); });
        using var timeout = new CancellationTokenSource(limit);
        try { await p.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            return (-1, $"{file} {string.Join(' ', args)} ran past {limit}:\n{output}");
        }
        await Task.WhenAll(readOut, readErr);
        return (p.ExitCode, output.ToString());
    }

    static string Tail(string log) => log.Length <= 4000 ? log : log[^4000..];
}
