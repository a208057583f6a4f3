using System.Text.Json.Nodes;
using RecurrentGemma.Model.Modules;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The kernels' timed decisions survive the process: written to the file as they are taken, read
/// back by the next process on the same machine and build instead of timing again, ignored when
/// the file is someone else's or broken. (The server's restart test shows a real decision taken
/// from the file.)
/// </summary>
[Collection(nameof(KernelChoicesTests))]   // process-wide state: never alongside the other model tests
[CollectionDefinition(nameof(KernelChoicesTests), DisableParallelization = true)]
public sealed class KernelChoicesTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), "rg-choices-" + Guid.NewGuid().ToString("N")[..8]);
    string File1 => Path.Combine(_dir, "sub", "choices.json");

    public KernelChoicesTests() => KernelChoices.Reset();

    public void Dispose()
    {
        KernelChoices.Reset();
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void The_file_is_still_this_process_s_while_an_engine_runs_a_step_on_fewer_threads()
    {
        // A running engine sets libtorch's process-wide thread count per decode step; a file read
        // or written in such a moment must not look like another machine's (it was once refused
        // after an engine stopped on one thread, and every decision was timed again).
        KernelChoices.UseFile(File1);
        KernelChoices.Decide("probe/x", () => new KernelChoices.Entry(1, [1, 2]));
        int threads = TorchSharp.torch.get_num_threads();
        try
        {
            TorchSharp.torch.set_num_threads(threads == 1 ? 2 : 1);
            KernelChoices.Reset();
            Assert.StartsWith("1 read from", KernelChoices.UseFile(File1));
            Assert.True(KernelChoices.TryRecall("probe/x", out _));
        }
        finally { TorchSharp.torch.set_num_threads(threads); }
    }

    [Fact]
    public void A_decision_is_written_and_the_next_process_reads_it_instead_of_timing()
    {
        Assert.Contains("none yet", KernelChoices.UseFile(File1));
        int timed = 0;
        var first = KernelChoices.Decide("test/gemm/x24", () => { timed++; return new KernelChoices.Entry(1, [15.6, 21.9]); });
        Assert.Equal(1, first.Value);
        Assert.Equal(1, timed);

        var json = JsonNode.Parse(File.ReadAllText(File1))!;
        Assert.Equal(KernelChoices.Fingerprint(), (string?)json["fingerprint"]);
        Assert.Equal(1, (double)json["choices"]!["test/gemm/x24"]!["value"]!);

        KernelChoices.Reset();   // a new process
        Assert.Contains("1 read", KernelChoices.UseFile(File1));
        var again = KernelChoices.Decide("test/gemm/x24", () => throw new InvalidOperationException("timed again"));
        Assert.Equal(1, again.Value);
        Assert.Equal([15.6, 21.9], again.Timings);
        Assert.Equal(1, KernelChoices.Recalled);

        // A decision not in the file is timed and added beside the ones read.
        var other = KernelChoices.Decide("test/dot/x4", () => { timed++; return new KernelChoices.Entry(0, [1.5, 2.0]); });
        Assert.Equal(0, other.Value);
        Assert.Equal(2, timed);
        var choices = JsonNode.Parse(File.ReadAllText(File1))!["choices"]!.AsObject();
        Assert.Equal(["test/dot/x4", "test/gemm/x24"], choices.Select(c => c.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_file_from_another_machine_or_build_is_not_read_and_is_replaced()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(File1)!);
        File.WriteAllText(File1, """{"fingerprint":"some other CPU|64|...","choices":{"test/gemm/x24":{"value":0,"timings":[1,2]}}}""");
        Assert.Contains("another machine or build", KernelChoices.UseFile(File1));
        int timed = 0;
        Assert.Equal(1, KernelChoices.Decide("test/gemm/x24", () => { timed++; return new KernelChoices.Entry(1, [3, 4]); }).Value);
        Assert.Equal(1, timed);
        Assert.Equal(KernelChoices.Fingerprint(), (string?)JsonNode.Parse(File.ReadAllText(File1))!["fingerprint"]);
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("[1, 2, 3]")]
    [InlineData("""{"fingerprint": 5}""")]
    public void A_broken_file_is_timed_over(string content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(File1)!);
        File.WriteAllText(File1, content);
        var said = KernelChoices.UseFile(File1);
        Assert.True(said.Contains("unreadable") || said.Contains("another machine"), said);
        Assert.Equal(0, KernelChoices.Decide("test/x", () => new KernelChoices.Entry(0, [])).Value);
        Assert.NotNull(JsonNode.Parse(File.ReadAllText(File1))!["choices"]!["test/x"]);
    }

    [Fact]
    public void Entries_with_a_fingerprint_that_matches_but_odd_values_are_skipped()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(File1)!);
        var root = new JsonObject
        {
            ["fingerprint"] = KernelChoices.Fingerprint(),
            ["choices"] = new JsonObject
            {
                ["test/good"] = new JsonObject { ["value"] = 1, ["timings"] = new JsonArray(1.0, 2.0) },
                ["test/text"] = new JsonObject { ["value"] = "yes" },
                ["test/none"] = 7,
            },
        };
        File.WriteAllText(File1, root.ToJsonString());
        Assert.Contains("1 read", KernelChoices.UseFile(File1));
        Assert.Equal(1, KernelChoices.Decide("test/good", () => throw new InvalidOperationException()).Value);
        Assert.Equal(0, KernelChoices.Decide("test/text", () => new KernelChoices.Entry(0, [])).Value);
    }

    [Fact]
    public void A_file_that_cannot_be_written_leaves_the_decision_in_memory()
    {
        Directory.CreateDirectory(_dir);
        var blocker = Path.Combine(_dir, "a-file");
        File.WriteAllText(blocker, "");
        KernelChoices.UseFile(Path.Combine(blocker, "choices.json"));   // its directory is a file
        Assert.Equal(1, KernelChoices.Decide("test/y", () => new KernelChoices.Entry(1, [])).Value);
        Assert.NotNull(KernelChoices.WriteFailure);
        Assert.Contains("writing it failed", KernelChoices.Describe());
        Assert.Equal(1, KernelChoices.Decide("test/y", () => throw new InvalidOperationException()).Value);
    }

    [Fact]
    public void Without_a_file_each_process_times_its_own()
    {
        Assert.Null(KernelChoices.FilePath);
        Assert.Equal(0.5, KernelChoices.Decide("test/z", () => new KernelChoices.Entry(0.5, [])).Value);
        Assert.Contains("not kept", KernelChoices.Describe());
    }
}
