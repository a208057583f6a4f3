using TorchSharp;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// A forward frees each layer's temporaries as the layer ends: at every layer's mark the pass
/// holds the same number of tensors as at the first layer of that kind, not one more layer's
/// worth each time (kept to the end, a 512-token prefill's activations added up over the layers).
/// </summary>
public class LayerScopeTests
{
    [Theory]
    [InlineData(12)]   // a prefill chunk
    [InlineData(1)]    // a decode step
    public void The_tensors_held_at_each_layer_do_not_add_up_over_the_layers(int tokens)
    {
        var fx = GriffinFixture.Get("tiny");
        using var model = fx.LoadModel();
        var config = model.Config;
        using var state = model.CreateState(1);
        using (model.Forward([[2L, 3, 4]], state, [0])) { }

        var live = new Dictionary<string, long>();
        model.PartDone = name => live[name] = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (model.Forward([Enumerable.Range(0, tokens).Select(i => 5L + i).ToArray()], state, [0])) { }
        model.PartDone = null;

        foreach (var kind in new[] { BlockKind.Recurrent, BlockKind.Attention })
        {
            var layers = Enumerable.Range(0, config.NumHiddenLayers).Where(l => config.KindOf(l) == kind).ToList();
            Assert.True(layers.Count >= 2, $"the fixture has two {kind} layers");
            long first = live[$"block{layers[0]}"];
            foreach (var l in layers.Skip(1))
                Assert.True(live[$"block{l}"] == first, $"{kind} layer {l}: {live[$"block{l}"]} tensors held, the first such layer {first}");
        }
        // The head's logits are what the pass keeps; the layers' temporaries are gone by then.
        Assert.True(live["head"] < live[$"block{config.NumHiddenLayers - 1}"], $"head {live["head"]} vs last layer {live[$"block{config.NumHiddenLayers - 1}"]}");
    }
}
