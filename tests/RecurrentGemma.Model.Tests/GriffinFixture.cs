using System.Text.Json;
using RecurrentGemma.Model.Checkpoints;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// One golden fixture folder (tests/fixtures/griffin/NAME): a tiny random-weight model plus the
/// outputs Google's reference computed for it (see that folder's README.md).
/// </summary>
public sealed class GriffinFixture
{
    public string Name { get; }
    public string Directory { get; }
    public GriffinConfig Config { get; }
    public JsonElement Cases { get; }
    readonly Dictionary<string, (long[] Shape, float[] Data)> _arrays = new();

    GriffinFixture(string dir)
    {
        Directory = dir;
        Name = Path.GetFileName(dir);
        Config = GriffinConfig.FromFile(Path.Combine(dir, "config.json"));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "cases.json")));
        Cases = doc.RootElement.GetProperty("cases").Clone();
        using var file = SafeTensorsFile.Open(Path.Combine(dir, "cases.safetensors"));
        foreach (var e in file.Entries.Values)
        {
            using var t = file.Read(e.Name);
            _arrays[e.Name] = (e.Shape, t.to(ScalarType.Float32).data<float>().ToArray());
        }
    }

    public (long[] Shape, float[] Data) Array(string name) => _arrays[name];

    public GriffinForCausalLM LoadModel(string? weightsFile = null, ScalarType dtype = ScalarType.Float32) =>
        CheckpointLoader.Load(Directory, new ModelLoadOptions { WeightsFile = weightsFile, DType = dtype, Device = TestDevice });

    public long[] Ids(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt64()).ToArray();

    static readonly Dictionary<string, GriffinFixture> Cache = new();

    public static GriffinFixture Get(string name)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(name, out var f)) Cache[name] = f = new GriffinFixture(Path.Combine(Root, name));
            return f;
        }
    }

    /// <summary>Every fixture folder, discovered (not hard-coded), for [MemberData].</summary>
    /// <summary>
    /// The device the model and engine tests run on: RGEMMA_TEST_DEVICE=cuda (or cuda:N) runs the
    /// same tests on a GPU; unset means the CPU. Tests compare on the host, so nothing else changes.
    /// </summary>
    public static Device TestDevice { get; } = TorchDevices.Resolve(Environment.GetEnvironmentVariable("RGEMMA_TEST_DEVICE") is { Length: > 0 } d ? d : "cpu");

    /// <summary>
    /// RGEMMA_TEST_CPU_PATHS=off runs the whole model or engine test project with the CPU's own
    /// paths off (<see cref="Modules.CpuPaths"/>): the GPU's tensor-op path, rehearsed on the CPU
    /// with the filter a GPU run uses ("Device!=cpu-only"). Called by each test assembly's module
    /// initializer, before any test.
    /// </summary>
    public static void ApplyTestSettings()
    {
        if (Environment.GetEnvironmentVariable("RGEMMA_TEST_CPU_PATHS") is "off") Modules.CpuPaths.Enabled = false;
    }

    [System.Runtime.CompilerServices.ModuleInitializer]
    internal static void Initialize() => ApplyTestSettings();

    public static IEnumerable<object[]> All() =>
        System.IO.Directory.GetDirectories(Root)
            .Where(d => File.Exists(Path.Combine(d, "cases.json")))
            .Order(StringComparer.Ordinal)
            .Select(d => new object[] { Path.GetFileName(d) });

    public static string Root => Path.Combine(RepoPaths.Root, "tests", "fixtures", "griffin");
}

public static class RepoPaths
{
    /// <summary>The repository root: the first ancestor of the test binaries holding the solution.</summary>
    public static string Root { get; } = Find();

    static string Find()
    {
        // From this assembly's folder, not the process's base folder: a console test runner
        // (scripts/gpu-bundle.sh, on machines without the SDK) runs from its own directory.
        var start = Path.GetDirectoryName(typeof(RepoPaths).Assembly.Location) is { Length: > 0 } here ? here : AppContext.BaseDirectory;
        var dir = new DirectoryInfo(start);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "RecurrentGemma.Server.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root (RecurrentGemma.Server.sln) not found above " + start);
    }
}

public static class Compare
{
    /// <summary>Max |a − b| over two equally long arrays.</summary>
    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    public static float[] Floats(Tensor t) => t.detach().cpu().to(ScalarType.Float32).contiguous().data<float>().ToArray();

    /// <summary>Rows [from, from+count) of a [rows, width] reference array.</summary>
    public static float[] Rows(float[] data, int width, int from, int count) => data.AsSpan(from * width, count * width).ToArray();

    public static void Close(float[] expected, float[] actual, double tolerance, string what)
    {
        var d = MaxAbsDiff(expected, actual);
        int first = Enumerable.Range(0, expected.Length).FirstOrDefault(i => Math.Abs((double)expected[i] - actual[i]) > tolerance, -1);
        Assert.True(d <= tolerance, $"{what}: max |Δ| = {d:E3} > {tolerance:E1} (first at element {first} of {expected.Length})");
    }

    /// <summary>|Δ| ≤ abs + rel·|ref| element-wise (hidden states grow large in the residual stream).</summary>
    public static void CloseRelative(float[] expected, float[] actual, double abs, double rel, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double lim = abs + rel * Math.Abs(expected[i]);
            double d = Math.Abs((double)expected[i] - actual[i]);
            Assert.True(d <= lim, $"{what}[{i}]: expected {expected[i]}, got {actual[i]} (|Δ| {d:E3} > {lim:E3})");
        }
    }

    public static long ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }
}
