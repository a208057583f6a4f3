using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>Cases e (per-layer activations) and f (decode state after prefill) of every fixture.</summary>
public class ReferenceStateTests
{
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void E_every_recorded_activation_matches_the_reference(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var e = fx.Cases.GetProperty("e");
        var seq = fx.Ids(e.GetProperty("sequence"));
        var recorded = new Dictionary<string, float[]>();
        using var state = model.CreateState(1);
        using var logits = model.Forward([seq], state, [0], LogitsSelection.All,
            (key, t) => recorded[key] = Compare.Floats(t));

        var arrays = e.GetProperty("arrays").EnumerateArray().Select(x => x.GetString()!).ToList();
        Assert.NotEmpty(arrays);
        foreach (var arrayName in arrays)
        {
            var key = arrayName["e.".Length..];
            Assert.True(recorded.ContainsKey(key), $"the forward pass recorded no '{key}'");
            Compare.CloseRelative(fx.Array(arrayName).Data, recorded[key], 1e-3, 1e-4, $"{name} {arrayName}");
        }
    }

    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void F_state_after_prefill_equals_the_reference_cache(string name)
    {
        var fx = GriffinFixture.Get(name);
        using var model = fx.LoadModel();
        var prompt = fx.Ids(fx.Cases.GetProperty("d").GetProperty("prompt"));
        using var state = model.CreateState(3);
        using (model.Forward([prompt], state, [1])) { } // a middle slot: the others must stay untouched
        Assert.Equal(prompt.Length, state.TokenCount(1));

        foreach (var layer in fx.Cases.GetProperty("f").GetProperty("layers").EnumerateArray())
        {
            int l = layer.GetProperty("layer").GetInt32();
            if (layer.GetProperty("kind").GetString() == "recurrent")
            {
                Assert.Equal(ScalarType.Float32, state.RnnOf(l, 1).dtype);
                Compare.Close(fx.Array(layer.GetProperty("rg_lru_state").GetString()!).Data, Compare.Floats(state.RnnOf(l, 1)), 1e-4, $"{name} layer {l} rg_lru");
                Compare.Close(fx.Array(layer.GetProperty("conv1d_state").GetString()!).Data, Compare.Floats(state.ConvOf(l, 1)), 1e-4, $"{name} layer {l} conv1d");
            }
            else
            {
                Assert.Equal(prompt.Length, layer.GetProperty("num_tokens").GetInt64());
                Compare.Close(fx.Array(layer.GetProperty("keys").GetString()!).Data, Compare.Floats(state.KeysOf(l, 1)), 1e-4, $"{name} layer {l} keys");
                Compare.Close(fx.Array(layer.GetProperty("values").GetString()!).Data, Compare.Floats(state.ValuesOf(l, 1)), 1e-4, $"{name} layer {l} values");
            }
        }
        foreach (var slot in new[] { 0, 2 })
            foreach (var t in state.AllTensors())
                Assert.Equal(0f, Compare.Floats(t[slot]).Select(Math.Abs).Max());
    }
}
