namespace RecurrentGemma.Deploy.Tests;

/// <summary>The repository root: the first ancestor of the test binaries holding the solution file.</summary>
internal static class RepoRoot
{
    public static string Path { get; } = Find();

    static string Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "RecurrentGemma.Server.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }
}
