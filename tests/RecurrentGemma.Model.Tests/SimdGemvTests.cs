using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The batch-1 SIMD projection equals libtorch's (f32) and libtorch's f32 math rounded to bf16
/// (bf16), on shapes that leave tails at every level (rows not a multiple of 4, K not a multiple
/// of the vector width, uneven thread parts); and the fixture models still match the reference
/// with every projection forced through it (their weights are below its size threshold).
/// </summary>
[Trait("Paths", "cpu-kernels")]   // tests of the CPU's own kernels: they need CpuPaths on (a GPU machine runs them on its CPU)
[Collection(nameof(SimdGemvTests))]   // flips process-wide switches: never alongside the other model tests
[CollectionDefinition(nameof(SimdGemvTests), DisableParallelization = true)]
public class SimdGemvTests
{
    static bool Vectors => SimdGemv.Supported;

    [Theory]
    [InlineData(1027, 1000, true, 1)]
    [InlineData(3000, 2560, false, 1)]
    [InlineData(5, 37, true, 1)]
    [InlineData(1, 16, false, 1)]
    [InlineData(1027, 1000, true, 2)]
    [InlineData(3001, 2560, false, 3)]
    [InlineData(5, 37, true, 4)]
    [InlineData(515, 130, true, 5)]
    [InlineData(1024, 2560, false, 8)]
    [InlineData(40000, 64, true, 7)]       // two passes over each of many blocks of weight rows
    [InlineData(515, 130, false, 9)]       // nine to 32 rows: more passes of four, and a rest
    [InlineData(3001, 2560, true, 16)]
    [InlineData(40000, 64, false, 32)]
    public void F32_equals_libtorch(int n, int k, bool withBias, int rows)
    {
        if (!Vectors || rows > SimdGemv.RowsSupported) return;
        using var gen = new Generator(5);
        using var w = empty(n, k).normal_(0, 0.05, gen);
        using var b = empty(n).normal_(0, 0.1, gen);
        using var x = empty(rows, 1, k).normal_(0, 1, gen);
        using var expected = nn.functional.linear(x, w, withBias ? b : null);
        using var actual = SimdGemv.Linear(x, w, withBias ? b : null);
        Assert.Equal(expected.shape, actual.shape);
        Compare.Close(Compare.Floats(expected), Compare.Floats(actual), 1e-4, "f32 gemv");
    }

    [Theory]
    [InlineData(1027, 1001, true, 1)]
    [InlineData(1029, 1000, true, 1)]      // even K: eight-row groups with a tail in K and in rows
    [InlineData(4096, 2560, false, 1)]
    [InlineData(7, 33, true, 1)]
    [InlineData(1027, 1001, true, 2)]
    [InlineData(4095, 2560, false, 3)]
    [InlineData(7, 33, true, 4)]
    [InlineData(515, 130, false, 6)]
    [InlineData(1024, 2560, true, 8)]
    [InlineData(40001, 64, true, 7)]
    [InlineData(515, 130, true, 13)]       // past eight rows: passes of four
    [InlineData(1024, 2560, false, 32)]
    public void Bf16_equals_f32_math_rounded_once(int n, int k, bool withBias, int rows)
    {
        if (!Vectors || rows > SimdGemv.RowsSupported) return;
        using var gen = new Generator(6);
        using var w = empty(n, k).normal_(0, 0.05, gen).to(ScalarType.BFloat16);
        using var b = empty(n).normal_(0, 0.1, gen).to(ScalarType.BFloat16);
        using var x = empty(rows, k).normal_(0, 1, gen).to(ScalarType.BFloat16);
        using var exact = nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32), withBias ? b.to(ScalarType.Float32) : null);
        using var actual = SimdGemv.Linear(x, w, withBias ? b : null);
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        var e = Compare.Floats(exact);
        var a = Compare.Floats(actual.to(ScalarType.Float32));
        // Only the order of the float32 sum differs, so each output is within one bf16 step (2⁻⁸ relative) of the exact sum.
        for (int i = 0; i < rows * n; i++)
            Assert.True(Math.Abs(a[i] - e[i]) <= Math.Abs(e[i]) / 256 + 1e-5, $"row {i}: {a[i]} vs {e[i]}");
        // And libtorch's own bf16 product agrees to bf16 precision.
        using var torchBf16 = nn.functional.linear(x, w, withBias ? b : null);
        Compare.Close(Compare.Floats(torchBf16.to(ScalarType.Float32)), a, 0.05, "bf16 gemv vs libtorch bf16");
    }

    [Theory]
    [InlineData(1027, 1000, ScalarType.Float32)]
    [InlineData(3000, 2560, ScalarType.Float32)]
    [InlineData(1027, 1001, ScalarType.BFloat16)]
    [InlineData(1029, 2560, ScalarType.BFloat16)]
    public void The_avx2_path_equals_the_avx512_path_and_libtorch(int n, int k, ScalarType dtype)
    {
        if (!Vectors || !System.Runtime.Intrinsics.X86.Avx2.IsSupported || !System.Runtime.Intrinsics.X86.Fma.IsSupported) return;
        using var gen = new Generator(7);
        using var w = empty(n, k).normal_(0, 0.05, gen).to(dtype);
        using var b = empty(n).normal_(0, 0.1, gen).to(dtype);
        using var x = empty(1, k).normal_(0, 1, gen).to(dtype);
        using var wide = SimdGemv.Linear(x, w, b);
        SimdGemv.Avx2Only = true;
        try
        {
            Assert.Equal(1, SimdGemv.RowsSupported);
            using var narrow = SimdGemv.Linear(x, w, b);
            var expected = Compare.Floats(nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32), b.to(ScalarType.Float32)));
            double tol = dtype == ScalarType.BFloat16 ? 0.05 : 1e-4;
            Compare.Close(expected, Compare.Floats(narrow.to(ScalarType.Float32)), tol, "avx2 path vs exact");
            Compare.Close(Compare.Floats(wide.to(ScalarType.Float32)), Compare.Floats(narrow.to(ScalarType.Float32)), tol, "avx2 path vs avx-512 path");
        }
        finally { SimdGemv.Avx2Only = false; }
    }

    [Theory]
    [InlineData(ScalarType.Float32, 0)]
    [InlineData(ScalarType.Float32, 1)]
    [InlineData(ScalarType.BFloat16, 0)]
    [InlineData(ScalarType.BFloat16, 1)]
    public void Rows_of_x_that_are_a_narrow_of_a_wider_tensor_take_the_kernel_and_equal_libtorch(ScalarType dtype, int half)
    {
        // The MLP's gated half of [B, T, 2M] is such a view: its rows are 2M apart.
        if (!Vectors || SimdGemv.RowsSupported < 4) return;
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        (SimdGemv.Forced, SimdGemv.MinElements) = (true, 0);
        try
        {
            using var scope = NewDisposeScope();
            using var gen = new Generator(11);
            long k = 1000, n = 777;
            var w = empty(n, k).normal_(0, 0.05, gen).to(dtype);
            var b = empty(n).normal_(0, 0.1, gen).to(dtype);
            var wide = empty(4, 1, 2 * k).normal_(0, 1, gen).to(dtype);
            var x = wide.narrow(-1, half * k, k);
            Assert.False(x.is_contiguous());
            Assert.Equal(2 * k, SimdGemv.RowStride(x));
            Assert.True(SimdGemv.Applies(x, w, b));
            var expected = nn.functional.linear(x.contiguous().to(ScalarType.Float32), w.to(ScalarType.Float32), b.to(ScalarType.Float32));
            var actual = SimdGemv.Linear(x, w, b);
            Assert.Equal(new long[] { 4, 1, n }, actual.shape);
            Compare.Close(Compare.Floats(expected.to(dtype).to(ScalarType.Float32)), Compare.Floats(actual.to(ScalarType.Float32)),
                dtype == ScalarType.BFloat16 ? 0.02 : 1e-4, $"{dtype} narrow half {half}");
        }
        finally { (SimdGemv.Forced, SimdGemv.MinElements) = (forced, min); }
    }

    [Fact]
    public void Row_strides_are_found_only_where_the_leading_dims_collapse_into_one()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(8, SimdGemv.RowStride(zeros(3, 8)));
        Assert.Equal(8, SimdGemv.RowStride(zeros(1, 1, 8)));
        Assert.Equal(16, SimdGemv.RowStride(zeros(3, 1, 16).narrow(-1, 8, 8)));
        Assert.Equal(16, SimdGemv.RowStride(zeros(2, 3, 16).narrow(-1, 0, 8)));   // [2, 3] rows, 16 apart throughout
        Assert.Equal(-1, SimdGemv.RowStride(zeros(2, 4, 8).narrow(1, 0, 3)));    // a gap between the 3rd and 4th row
        Assert.Equal(-1, SimdGemv.RowStride(zeros(8, 3).t()));                    // columns, not rows
    }

    [Fact]
    public void The_l2_size_is_read_as_the_kernel_writes_it()
    {
        Assert.Equal(2048L << 10, CpuCache.Parse("2048K\n"));
        Assert.Equal(1L << 20, CpuCache.Parse("1M"));
        Assert.Equal(524288L, CpuCache.Parse("524288"));
        Assert.Null(CpuCache.Parse("big"));
        Assert.Null(CpuCache.Parse("0K"));
        Assert.InRange(CpuCache.L2Bytes, 64L << 10, 1L << 30);   // read here, or the 1 MiB fallback
    }

    [Fact]
    public void Only_few_rows_of_a_contiguous_cpu_weight_take_the_kernel()
    {
        if (!Vectors) return;
        bool forced = SimdGemv.Forced;
        SimdGemv.Forced = true;
        BatchInvariance.Enabled = false;   // the rules by size and row count; the guarantee's own below
        try
        {
            using var w = zeros(2048, 1024);
            using var wb = zeros(new long[] { 2048, 1024 }, ScalarType.BFloat16);
            Assert.True(SimdGemv.Applies(zeros(1, 1024), w, null));
            Assert.True(SimdGemv.Applies(zeros(new long[] { 1, 1, 1024 }, ScalarType.BFloat16), wb, null));
            Assert.Equal(SimdGemv.RowsSupported >= 2, SimdGemv.Applies(zeros(2, 1024), w, null));   // few rows: AVX-512 only
            Assert.Equal(SimdGemv.RowsSupported >= 8, SimdGemv.Applies(zeros(8, 1, 1024), w, null));
            // More than eight rows: passes of four over L2 blocks, up to 32 (AVX-512 only); more: libtorch's GEMM.
            Assert.Equal(SimdGemv.RowsSupported >= 9, SimdGemv.Applies(zeros(9, 1024), w, null));
            Assert.Equal(SimdGemv.RowsSupported >= 16, SimdGemv.Applies(zeros(new long[] { 16, 1, 1024 }, ScalarType.BFloat16), wb, null));
            Assert.Equal(SimdGemv.RowsSupported >= 32, SimdGemv.Applies(zeros(32, 1024), w, null));
            Assert.True(SimdGemv.RowsSupported is 1 or SimdGemv.MaxPassRows);
            Assert.False(SimdGemv.Applies(zeros(SimdGemv.MaxPassRows + 1, 1024), w, null));
            Assert.False(SimdGemv.Applies(zeros(new long[] { SimdGemv.MaxPassRows + 1, 1024 }, ScalarType.BFloat16), wb, null));
            Assert.False(SimdGemv.Applies(zeros(1, 2048), w.t(), null));                    // transposed view
            Assert.False(SimdGemv.Applies(zeros(new long[] { 1, 1024 }, ScalarType.BFloat16), w, null));   // mixed dtypes
            Assert.False(SimdGemv.Applies(zeros(1, 64), zeros(64, 64), null));              // below the size threshold

            // BatchInvariance: every size and 1–16 rows, on the 256-bit loops too, never by timing.
            BatchInvariance.Enabled = true;
            SimdGemv.Forced = false;
            foreach (bool avx2 in new[] { false, true })
            {
                SimdGemv.Avx2Only = avx2;
                Assert.True(SimdGemv.Applies(zeros(1, 64), zeros(64, 64), null));
                Assert.True(SimdGemv.Applies(zeros(BatchInvariance.MaxRows, 64), zeros(64, 64), null));
                Assert.True(SimdGemv.Applies(zeros(new long[] { 13, 1, 1024 }, ScalarType.BFloat16), wb, null));
                Assert.False(SimdGemv.Applies(zeros(BatchInvariance.MaxRows + 1, 64), zeros(64, 64), null));   // small: below the size threshold
                Assert.False(SimdGemv.Applies(zeros(new long[] { 1, 1024 }, ScalarType.BFloat16), w, null));
            }
        }
        finally { (SimdGemv.Forced, SimdGemv.Avx2Only, BatchInvariance.Enabled) = (forced, false, true); }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Fixture_models_match_the_reference_with_every_projection_through_the_kernel(string name)
    {
        if (!Vectors) return;
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        SimdGemv.Forced = true;
        SimdGemv.MinElements = 0;
        try
        {
            var fx = GriffinFixture.Get(name);
            var d = fx.Cases.GetProperty("d");
            using (var model = fx.LoadModel())
                ReferenceLogitsTests.AssertGreedy(fx, model, fx.Ids(d.GetProperty("prompt")), fx.Ids(d.GetProperty("generated")), fx.Array("d.step_logits").Data);
            // Batched decode of rows at different positions: the few-row kernels.
            new ReferenceLogitsTests().B_prefill_prefix_then_batched_decode_of_sequences_at_different_positions(name);
            // bf16 arithmetic: one decode step through the kernel against libtorch's bf16 path, within
            // a fraction of the drift the reference's own bf16 run shows against f32 (~1.0). The
            // prompt's rows go through the kernel too where the bf16 dot kernel takes them (up to
            // 32), so the two paths' roundings part from the prefill on: each is held to the
            // same model in f32 (bf16 weights, float32 arithmetic), the kernel's drift to no more
            // than libtorch's plus a margin for the order of the roundings.
            float[] BfStep(ScalarType dtype = ScalarType.BFloat16)
            {
                using var model = dtype == ScalarType.Float32 ? fx.LoadModel() : fx.LoadModel("model.bf16.safetensors", ScalarType.BFloat16);
                using var state = model.CreateState(1);
                var prompt = fx.Ids(d.GetProperty("prompt"));
                using (model.Forward([prompt], state, [0])) { }
                using var step = model.Forward([new long[] { prompt[^1] }], state, [0]);
                return Compare.Floats(step);
            }
            var kernel = BfStep();
            var f32 = BfStep(ScalarType.Float32);
            SimdGemv.Enabled = false;
            float[] torch;
            try { torch = BfStep(); }
            finally { SimdGemv.Enabled = true; }
            Compare.Close(torch, kernel, 0.4, $"{name} bf16 step, kernel vs libtorch");
            double dKernel = Compare.MaxAbsDiff(f32, kernel), dTorch = Compare.MaxAbsDiff(f32, torch);
            Assert.True(dKernel <= 1.25 * dTorch + 0.05, $"{name}: the kernel's bf16 step drifts {dKernel:F3} from f32, libtorch's {dTorch:F3}");
        }
        finally { (SimdGemv.Forced, SimdGemv.MinElements) = (forced, min); }
    }
}
