using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The fused CPU passes of a small decode step (the recurrent block's conv + RG-LRU + gated
/// product with the state updated in place, the MLP's GELU gate, the logits' soft cap) give the
/// logits and the state the tensor path gives, for rows in scattered slots, in f32 and bf16, on
/// the fixtures and on a shape that leaves a tail at every vector loop (block width 13, which
/// also keeps a bf16 model's gates in float32; MLP width 100; vocabulary 250).
/// </summary>
[Collection(nameof(SimdGemvTests))]   // flips process-wide switches
public class StepFusionTests
{
    static readonly GriffinConfig Odd = new()
    {
        VocabSize = 250, HiddenSize = 40, IntermediateSize = 200, NumHiddenLayers = 3,
        NumAttentionHeads = 4, HeadDimOverride = 12, LruWidthOverride = 52, AttentionWindowSize = 8,
    };

    public static IEnumerable<object[]> Cases() =>
    [
        ["tiny", ScalarType.Float32], ["tiny", ScalarType.BFloat16], ["tiny-long", ScalarType.Float32],
        ["odd", ScalarType.Float32], ["odd", ScalarType.BFloat16],
    ];

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(Cases))]
    public void Fused_decode_steps_equal_the_tensor_path(string name, ScalarType dtype)
    {
        if (!SimdGemv.Supported || GriffinFixture.TestDevice.type != TorchSharp.DeviceType.CPU) return;
        using var model = Load(name, dtype);
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        (SimdGemv.Forced, SimdGemv.MinElements) = (true, 0);   // the fixtures' weights are below the kernels' size threshold
        try
        {
            long before = StepFusion.Passes;
            var (fusedLogits, fusedState) = Run(model, fused: true);
            long passes = StepFusion.Passes - before;
            var (tensorLogits, tensorState) = Run(model, fused: false);
            Assert.Equal(before + passes, StepFusion.Passes);   // none while switched off

            // Per step: one pass per recurrent layer, one MLP gate per layer, one soft cap; and the
            // prompts' soft cap (27 rows: their MLP gates fuse only up to 8 rows, or 16 under BatchInvariance).
            var c = model.Config;
            Assert.Equal(Steps * (c.RecurrentLayerCount + c.NumHiddenLayers + 1) + 1, passes);
            double tolerance = dtype == ScalarType.Float32 ? 1e-4 : 0.05;
            for (int s = 0; s < Steps; s++)
                Compare.Close(tensorLogits[s], fusedLogits[s], tolerance, $"{name} {dtype} step {s} logits");
            Compare.Close(tensorState, fusedState, dtype == ScalarType.Float32 ? 1e-4 : 0.02, $"{name} {dtype} state after the steps");
        }
        finally { (SimdGemv.Forced, SimdGemv.MinElements, StepFusion.Enabled) = (forced, min, true); }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(Cases))]
    public void One_row_on_the_256_bit_path_equals_the_tensor_path(string name, ScalarType dtype)
    {
        // What an AVX2-only CPU runs: the gate product's 256-bit loops (one row of x there).
        if (!SimdGemv.Supported || GriffinFixture.TestDevice.type != TorchSharp.DeviceType.CPU) return;
        using var model = Load(name, dtype);
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        (SimdGemv.Forced, SimdGemv.MinElements, SimdGemv.Avx2Only) = (true, 0, true);
        try
        {
            long before = StepFusion.Passes;
            var (fusedLogits, fusedState) = Run(model, fused: true, [1]);
            var c = model.Config;
            // The 5-token prompt is 5 rows: its MLP gates fuse too (the recurrent pass is for one-token steps).
            Assert.Equal(Steps * (c.RecurrentLayerCount + c.NumHiddenLayers + 1) + 1 + c.NumHiddenLayers, StepFusion.Passes - before);
            var (tensorLogits, tensorState) = Run(model, fused: false, [1]);
            double tolerance = dtype == ScalarType.Float32 ? 1e-4 : 0.05;
            for (int s = 0; s < Steps; s++)
                Compare.Close(tensorLogits[s], fusedLogits[s], tolerance, $"{name} {dtype} step {s} logits, 256-bit");
            Compare.Close(tensorState, fusedState, dtype == ScalarType.Float32 ? 1e-4 : 0.02, $"{name} {dtype} state, 256-bit");
        }
        finally { (SimdGemv.Forced, SimdGemv.MinElements, SimdGemv.Avx2Only, StepFusion.Enabled) = (forced, min, false, true); }
    }

    const int Steps = 4;

    static GriffinForCausalLM Load(string name, ScalarType dtype)
    {
        if (name != "odd")
            return dtype == ScalarType.Float32 ? GriffinFixture.Get(name).LoadModel() : GriffinFixture.Get(name).LoadModel("model.bf16.safetensors", dtype);
        var model = new GriffinForCausalLM(Odd, dtype, CPU);
        RandomWeights.Initialize(model, 17);
        return model;
    }

    /// <summary>
    /// Rows in <paramref name="slots"/> (default 3, 0, 2) after ragged prompts, then <see cref="Steps"/>
    /// decode steps, the last of the first row alone.
    /// </summary>
    static (float[][] Logits, float[] State) Run(GriffinForCausalLM model, bool fused, long[]? slots = null)
    {
        StepFusion.Enabled = fused;
        long vocab = model.Config.VocabSize;
        using var state = model.CreateState(4);
        slots ??= [3, 0, 2];
        long[][] prompts = new long[][] { [2, 5, 9, 14, 20], [2, 7, 7, 30, 11, 4, 90, 13, 6], [2, 40] }[..slots.Length];
        using (model.Forward(prompts, state, slots)) { }
        var logits = new float[Steps][];
        for (int s = 0; s < Steps; s++)
        {
            bool alone = s == Steps - 1;
            var rows = Enumerable.Range(0, alone ? 1 : slots.Length).Select(r => (IReadOnlyList<long>)new[] { (s * 7 + r * 3 + 5) % vocab }).ToList();
            using var step = model.Forward(rows, state, alone ? [slots[0]] : slots);
            logits[s] = Compare.Floats(step);
        }
        StepFusion.Enabled = true;
        var stateValues = new List<float>();
        for (int l = 0; l < model.Config.NumHiddenLayers; l++)
        {
            if (model.Config.KindOf(l) != BlockKind.Recurrent) continue;
            foreach (var slot in slots)
            {
                stateValues.AddRange(Compare.Floats(state.RnnOf(l, (int)slot)));
                stateValues.AddRange(Compare.Floats(state.ConvOf(l, (int)slot)));
            }
        }
        return (logits, stateValues.ToArray());
    }
}
