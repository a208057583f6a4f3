using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The row-by-row f32 loop (one weight row at a time, chosen per machine by timing against the
/// four-row loop) equals libtorch and the four-row loop, in 512- and 256-bit vectors, on shapes
/// with tails in K and in rows,
/// and a fixture model decodes the reference's greedy tokens through it.
/// </summary>
[Collection(nameof(SimdGemvTests))]   // flips SimdGemv's process-wide switches
public class F32RowByRowTests
{
    [Theory]
    [InlineData(1027, 1000, true, false)]    // K with a tail after the 64-wide body
    [InlineData(3000, 2560, false, false)]
    [InlineData(5, 37, true, false)]         // K shorter than one body step
    [InlineData(4099, 7680, false, false)]
    [InlineData(1027, 1000, true, true)]     // the 256-bit loops, which AVX2-only machines take
    [InlineData(5, 37, true, true)]
    public void Row_by_row_equals_libtorch_and_the_four_row_loop(int n, int k, bool withBias, bool avx2)
    {
        if (!SimdGemv.Supported) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(12);
        var w = empty(n, k).normal_(0, 0.05, gen);
        var b = empty(n).normal_(0, 0.1, gen);
        var x = empty(1, 1, k).normal_(0, 1, gen);
        var expected = Compare.Floats(nn.functional.linear(x, w, withBias ? b : null));
        if (avx2 && !(System.Runtime.Intrinsics.X86.Avx2.IsSupported && System.Runtime.Intrinsics.X86.Fma.IsSupported)) return;
        bool? before = SimdGemv.F32RowByRow;
        BatchInvariance.Enabled = false;   // the loop sums in another order than the others: only without the guarantee
        try
        {
            SimdGemv.Avx2Only = avx2;
            SimdGemv.F32RowByRow = true;
            Assert.True(SimdGemv.UsesF32RowByRow);
            var rowByRow = Compare.Floats(SimdGemv.Linear(x, w, withBias ? b : null));
            SimdGemv.F32RowByRow = false;
            Assert.False(SimdGemv.UsesF32RowByRow);
            var grouped = Compare.Floats(SimdGemv.Linear(x, w, withBias ? b : null));
            Compare.Close(expected, rowByRow, 1e-4, "row by row vs libtorch");
            Compare.Close(grouped, rowByRow, 1e-4, "row by row vs four rows per pass");
        }
        finally { (SimdGemv.F32RowByRow, SimdGemv.Avx2Only, BatchInvariance.Enabled) = (before, false, true); }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Fixture_models_decode_the_reference_tokens_through_it(string name)
    {
        if (!SimdGemv.Supported) return;
        bool? before = SimdGemv.F32RowByRow;
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        try
        {
            (SimdGemv.F32RowByRow, SimdGemv.Forced, SimdGemv.MinElements, BatchInvariance.Enabled) = (true, true, 0, false);
            var fx = GriffinFixture.Get(name);
            var d = fx.Cases.GetProperty("d");
            using var model = fx.LoadModel();
            ReferenceLogitsTests.AssertGreedy(fx, model, fx.Ids(d.GetProperty("prompt")), fx.Ids(d.GetProperty("generated")), fx.Array("d.step_logits").Data);
        }
        finally { (SimdGemv.F32RowByRow, SimdGemv.Forced, SimdGemv.MinElements, BatchInvariance.Enabled) = (before, forced, min, true); }
    }
}
