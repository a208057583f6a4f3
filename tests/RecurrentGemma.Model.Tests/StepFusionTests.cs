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

            // Per step: one pass per recurrent layer, one MLP gate per layer, one soft cap; and the prompts' soft cap.
            var c = model.Config;
            Assert.Equal(Steps * (c.RecurrentLayerCount + c.NumHiddenLayers + 1) + 1, passes);
            double tolerance = dtype == ScalarType.Float32 ? 1e-4 : 0.05;
            for (int s = 0; s < Steps; s++)
                Compare.Close(tensorLogits[s], fusedLogits[s], tolerance, $"{name} {dtype} step {s} logits");
            Compare.Close(tensorState, fusedState, dtype == ScalarType.Float32 ? 1e-4 : 0.02, $"{name} {dtype} state after the steps");
        }
        finally { (SimdGemv.Forced, SimdGemv.MinElements, StepFusion.Enabled) = (forced, min, true); }
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

    /// <summary>Three rows in slots 3, 0, 2 after ragged prompts, <see cref="Steps"/> decode steps (the last of row 0 alone).</summary>
    static (float[][] Logits, float[] State) Run(GriffinForCausalLM model, bool fused)
    {
        StepFusion.Enabled = fused;
        long vocab = model.Config.VocabSize;
        using var state = model.CreateState(4);
        long[] slots = [3, 0, 2];
        long[][] prompts = [[2, 5, 9, 14, 20], [2, 7, 7, 30, 11, 4, 90, 13, 6], [2, 40]];
        using (model.Forward(prompts, state, slots)) { }
        var logits = new float[Steps][];
        for (int s = 0; s < Steps; s++)
        {
            bool alone = s == Steps - 1;
            var rows = (alone ? [0] : new[] { 0, 1, 2 }).Select(r => (IReadOnlyList<long>)new[] { (s * 7 + r * 3 + 5) % vocab }).ToList();
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
