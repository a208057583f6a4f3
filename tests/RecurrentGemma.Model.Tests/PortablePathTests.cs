using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The path a GPU runs, checked where there is no GPU: with <see cref="CpuPaths"/> off the CPU
/// takes libtorch's tensor ops only (no kernel, no fused pass, no host read), which is what a
/// CUDA device runs, and the reference checks must hold on that path as they do on the kernels'.
/// Each case runs a reference test of this project unchanged with the switch off, and then
/// checks that no kernel read tensor memory through a host pointer meanwhile.
/// </summary>
[Collection(nameof(PortablePathTests))]   // flips a process-wide switch: never alongside the other model tests
[CollectionDefinition(nameof(PortablePathTests), DisableParallelization = true)]
public class PortablePathTests
{
    static readonly Dictionary<string, Action<string>> Checks = new()
    {
        ["a ragged prefill"] = n => new ReferenceLogitsTests().A_batch_of_two_different_lengths_prefills_to_the_reference_logits(n),
        ["b batched decode"] = n => new ReferenceLogitsTests().B_prefill_prefix_then_batched_decode_of_sequences_at_different_positions(n),
        ["c long sequence"] = n => new ReferenceLogitsTests().C_long_sequence_full_prefill_and_every_decode_path(n),
        ["d greedy"] = n => new ReferenceLogitsTests().D_greedy_continuation_is_token_exact(n),
        ["bf16 weights"] = n => new ReferenceLogitsTests().Bf16_weights_upcast_to_f32_match_the_reference(n),
        ["bf16 arithmetic"] = n => new ReferenceLogitsTests().Bf16_arithmetic_stays_within_the_drift_the_reference_shows(n),
        ["e activations"] = n => new ReferenceStateTests().E_every_recorded_activation_matches_the_reference(n),
        ["f state"] = n => new ReferenceStateTests().F_state_after_prefill_equals_the_reference_cache(n),
        ["ragged chunks on histories"] = n => new ChunkedPrefillTests().Ragged_batch_of_chunks_on_top_of_different_histories_equals_each_alone(n),
        ["forked slot"] = n => new ChunkedPrefillTests().A_forked_slot_continues_exactly_like_the_original(n),
    };

    public static IEnumerable<object[]> Cases() =>
        GriffinFixture.All().SelectMany(f => Checks.Keys.Select(c => new object[] { f[0], c }));

    /// <summary>Runs <paramref name="check"/> with the CPU paths off; returns the kernel reads it made.</summary>
    internal static long WithoutCpuPaths(Action check)
    {
        long before = CpuPaths.KernelReads;
        bool saved = CpuPaths.Enabled;
        CpuPaths.Enabled = false;
        try { check(); }
        finally { CpuPaths.Enabled = saved; }
        return CpuPaths.KernelReads - before;
    }

    [Theory, MemberData(nameof(Cases))]
    public void The_tensor_ops_a_gpu_runs_match_the_reference(string name, string check)
    {
        long reads = WithoutCpuPaths(() => Checks[check](name));
        Assert.True(reads == 0, $"{name} {check}: {reads} host-pointer reads with the CPU paths off");
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void The_switch_moves_a_step_off_the_kernels_and_not_off_its_numbers(ScalarType dtype)
    {
        // A prefill chunk and a 3-row decode step of the tiny fixture, each way. On, the kernels
        // read (where this CPU has them); off, nothing does, and the logits agree to rounding.
        var fx = GriffinFixture.Get("tiny");
        float[] Run(ScalarType compute)
        {
            using var model = dtype == ScalarType.Float32 ? fx.LoadModel() : fx.LoadModel("model.bf16.safetensors", compute);
            using var state = model.CreateState(3);
            using (model.Forward([new long[] { 2, 9, 14, 30, 7 }, [2, 4], [2, 8, 8]], state, [0, 1, 2])) { }
            using var step = model.Forward([new long[] { 11 }, [12], [13]], state, [0, 1, 2]);
            return Compare.Floats(step);
        }
        long before = CpuPaths.KernelReads;
        var kernels = Run(dtype);
        long onReads = CpuPaths.KernelReads - before;
        float[] tensors = [];
        long offReads = WithoutCpuPaths(() => tensors = Run(dtype));
        if (SimdGemv.Supported && GriffinFixture.TestDevice.type == TorchSharp.DeviceType.CPU && CpuPaths.Enabled)
            Assert.True(onReads > 0, "with the switch on the CPU's kernels should have run");
        Assert.Equal(0, offReads);
        if (dtype == ScalarType.Float32)
            Compare.Close(kernels, tensors, 1e-4, "tiny f32: kernels vs tensor ops");
        else
        {
            // bf16 rounds differently on each path (the kernels sum in float32 and round once):
            // each stays within the drift the reference's own bf16 run shows from f32 arithmetic
            // on the same weights (~1.0; the reference tests allow 2.5).
            var f32 = Run(ScalarType.Float32);
            Compare.Close(f32, kernels, 2.5, "tiny bf16 kernels vs f32 arithmetic");
            Compare.Close(f32, tensors, 2.5, "tiny bf16 tensor ops vs f32 arithmetic");
        }
    }
}
