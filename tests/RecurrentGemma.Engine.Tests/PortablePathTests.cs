using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The engine's step as a GPU runs it, here: with <see cref="CpuPaths"/> off the model and the
/// sampler take libtorch's tensor ops only (top-p by sorting, no kernels, no host reads), and the
/// step's guarantees — two transfers, seeded tokens that survive a batch and a restart, one
/// request's fault confined to it — are checked by the same tests as on the CPU's paths.
/// </summary>
[Collection(nameof(PortablePathTests))]   // flips a process-wide switch: never alongside the other engine tests
[CollectionDefinition(nameof(PortablePathTests), DisableParallelization = true)]
public class PortablePathTests
{
    static async Task<long> WithoutCpuPaths(Func<Task> check)
    {
        long before = CpuPaths.KernelReads;
        bool saved = CpuPaths.Enabled;
        CpuPaths.Enabled = false;
        try { await check(); }
        finally { CpuPaths.Enabled = saved; }
        return CpuPaths.KernelReads - before;
    }

    public static TheoryData<string> Kinds => DeviceStepTests.Kinds;

    [Theory, MemberData(nameof(Kinds))]
    public async Task A_step_copies_once_in_and_once_out_on_the_tensor_path(string kind) =>
        Assert.Equal(0, await WithoutCpuPaths(() =>
        {
            new DeviceStepTests().A_decode_step_and_a_prefill_chunk_each_copy_once_in_and_once_out(kind);
            return Task.CompletedTask;
        }));

    [Fact]
    public async Task The_engine_stays_within_two_transfers_on_the_tensor_path() =>
        Assert.Equal(0, await WithoutCpuPaths(new DeviceStepTests().Through_the_engine_every_forward_stays_within_two_transfers));

    [Fact]
    public async Task Seeded_tokens_survive_a_batch_and_a_restart_on_the_tensor_path() =>
        Assert.Equal(0, await WithoutCpuPaths(new DeviceStepTests().A_seeded_request_gives_the_same_tokens_alone_in_a_mixed_batch_and_after_a_restart));

    [Fact]
    public async Task A_sampling_fault_stays_with_its_request_on_the_tensor_path() =>
        Assert.Equal(0, await WithoutCpuPaths(new DeviceStepTests().A_fault_while_sampling_one_row_fails_that_request_only));

    [Fact]
    public async Task Top_p_by_sorting_keeps_what_the_selection_keeps()
    {
        // Rows of 20000 ids, broad and peaked, with every filter: the GPU's sort-based top-p
        // (switch off) against the CPU's selection (on), distribution by distribution.
        var gen = new Random(31);
        var values = new float[4 * 20000];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(gen.NextDouble() * ((i / 20000) % 2 == 0 ? 3 : 12));
        using var logits = tensor(values).view(4, 20000);
        var rows = new List<SamplingRow>
        {
            new(new SamplingParams { TopP = 0.9f }, 0.5, [], [], 0, false),
            new(new SamplingParams { TopP = 0.3f, Temperature = 0.7f }, 0.5, [], [], 0, false),
            new(new SamplingParams { TopP = 0.95f, TopK = 500, MinP = 0.01f }, 0.5, [], [], 0, false),
            new(new SamplingParams { TopP = 0.5f, PresencePenalty = 1 }, 0.5, [1, 2], [3, 3], 0, false),
        };
        var selected = Sampler.DistributionsOnce(logits, rows);
        float[][] sorted = [];
        Assert.Equal(0, await WithoutCpuPaths(() => { sorted = Sampler.DistributionsOnce(logits, rows); return Task.CompletedTask; }));
        for (int r = 0; r < rows.Count; r++)
        {
            int keptBySelection = selected[r].Count(p => p > 0), keptBySort = sorted[r].Count(p => p > 0);
            Assert.Equal(keptBySelection, keptBySort);
            Assert.True(keptBySort > 1 && keptBySort < 20000, $"row {r}: {keptBySort} ids kept: the filter did nothing to compare");
            for (int i = 0; i < 20000; i++)
                Assert.True(Math.Abs(selected[r][i] - sorted[r][i]) < 1e-6, $"row {r} id {i}: {selected[r][i]} vs {sorted[r][i]}");
        }
    }
}
