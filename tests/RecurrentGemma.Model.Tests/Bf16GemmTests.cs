using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The model's own bf16 GEMM (many rows of x on the CPU's bf16 dot product) against exact sums
/// rounded once to bf16, on shapes that leave a tail in every blocking (rows of x past a multiple
/// of 12, weight rows past a panel of 32 and a block of 256, K past a block of 512 columns, whose
/// float32 sums then wait in a scratch between blocks), with strided rows of x and leading dims;
/// when it applies; and bf16 fixture models through it drifting no more than through libtorch.
/// </summary>
[Trait("Paths", "cpu-kernels")]   // tests of the CPU's own kernels: they need CpuPaths on (a GPU machine runs them on its CPU)
[Collection(nameof(SimdGemvTests))]   // flips process-wide switches: never alongside the other model tests
public class Bf16GemmTests
{
    static bool Kernel => Bf16Gemm.Available;

    [Fact]
    public void It_is_offered_on_every_cpu_with_avx512_bf16_where_the_system_allows_executable_mappings()
    {
        if (!Bf16DotKernel.CpuHasAvx512Bf16 || !OperatingSystem.IsLinux())
        {
            Assert.False(Bf16Gemm.Available);
            return;
        }
        Assert.True(Bf16Gemm.Available || Bf16Gemm.Status.Contains("executable mapping") || Bf16Gemm.Status.StartsWith("mmap failed"),
            Bf16Gemm.Status);   // a wrong decode of the committed bytes or a failed self-check lands here
    }

    [Theory]
    [InlineData(1, 1, 2, false)]
    [InlineData(5, 31, 18, true)]
    [InlineData(12, 32, 512, false)]        // exactly one K block: no scratch
    [InlineData(13, 257, 1026, true)]       // a second block of weight rows with one row, a third K block of one pair
    [InlineData(17, 70, 40, true)]          // the fewest rows it takes: one tile of 12 and one of 5
    [InlineData(24, 33, 1024, false)]
    [InlineData(33, 600, 300, false)]
    [InlineData(100, 45, 520, true)]
    [InlineData(130, 1100, 96, true)]       // parts of 256 weight rows over the workers, a partial last one
    public void Linear_equals_exact_sums_rounded_once(int rows, int n, int k, bool withBias)
    {
        if (!Kernel) return;
        using var gen = new Generator(13);
        using var w = empty(n, k).normal_(0, 0.05, gen).to(ScalarType.BFloat16);
        using var b = empty(n).normal_(0, 0.1, gen).to(ScalarType.BFloat16);
        using var x = empty(rows, k).normal_(0, 1, gen).to(ScalarType.BFloat16);
        using var y = Bf16Gemm.Linear(x, w, withBias ? b : null);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        AssertRoundedOnce(x, w, withBias ? b : null, y);
    }

    /// <summary>
    /// A few rows of x (a short seeded prompt alone in a row-exact forward) may skip the packing
    /// pass: the same rows then give the same bits as inside a 40-row packed call, so a prompt's
    /// projections do not depend on how many others shared its forward.
    /// </summary>
    [Theory]
    [InlineData(1, 31, 18, true)]
    [InlineData(3, 257, 514, false)]     // a last group of one weight row; K past its last tile of 16
    [InlineData(16, 70, 40, true)]
    [InlineData(21, 45, 260, true)]      // more rows than one pass takes (16 + 5)
    public void The_unpacked_path_gives_each_row_the_packed_paths_bits(int rows, int n, int k, bool withBias)
    {
        if (!Kernel) return;
        using var gen = new Generator(22);
        using var w = empty(n, k).normal_(0, 0.05, gen).to(ScalarType.BFloat16);
        using var b = empty(n).normal_(0, 0.1, gen).to(ScalarType.BFloat16);
        using var x = empty(40, k).normal_(0, 1, gen).to(ScalarType.BFloat16);
        var bias = withBias ? b : null;
        using var packed = Bf16Gemm.Linear(x, w, bias, unpacked: false);
        using var few = x.narrow(0, 7, rows);
        using var unpacked = Bf16Gemm.Linear(few, w, bias, unpacked: true);
        AssertRoundedOnce(few, w, bias, unpacked);
        using var same = packed.narrow(0, 7, rows);
        Assert.True(unpacked.equal(same).all().item<bool>(), "the unpacked rows differ from the same rows packed");
    }

    [Fact]
    public void Rows_of_x_with_leading_dims_or_a_wider_row_stride_equal_exact_sums()
    {
        if (!Kernel) return;
        using var gen = new Generator(14);
        using var w = empty(70, 600).normal_(0, 0.05, gen).to(ScalarType.BFloat16);
        using var wide = empty(3, 15, 1201).normal_(0, 1, gen).to(ScalarType.BFloat16);   // [B, T, 2K + 1]; the kernel reads from column 601 on
        using var x = wide.narrow(-1, 601, 600);
        Assert.Equal(1201, SimdGemv.RowStride(x));
        using var y = Bf16Gemm.Linear(x, w, null);
        Assert.Equal(new long[] { 3, 15, 70 }, y.shape);
        using var packed = x.contiguous();
        AssertRoundedOnce(packed.reshape(45, 600), w, null, y.reshape(45, 70));
    }

    [Fact]
    public void Only_many_rows_of_a_large_enough_bf16_cpu_weight_with_whole_pairs_take_it()
    {
        if (!Kernel) return;
        bool forced = Bf16Gemm.Forced;
        Bf16Gemm.Forced = true;
        try
        {
            const ScalarType bf = ScalarType.BFloat16;
            using var w = zeros(1024, 1024, bf);
            Assert.True(Bf16Gemm.Applies(zeros(Bf16Gemm.MinRows, 1024, bf), w, null));
            Assert.True(Bf16Gemm.Applies(zeros(2, 40, 1024, bf), w, zeros(1024, bf)));
            Assert.False(Bf16Gemm.Applies(zeros(Bf16Gemm.MinRows - 1, 1024, bf), w, null));        // SimdGemv's rows
            Assert.False(Bf16Gemm.Applies(zeros(64, 1024), w.to(ScalarType.Float32), null));       // f32: F32Gemm's
            Assert.False(Bf16Gemm.Applies(zeros(64, 1024, bf), w, zeros(1024)));                   // an f32 bias
            Assert.False(Bf16Gemm.Applies(zeros(64, 1025, bf), zeros(1024, 1025, bf), null));      // a pair would straddle two weight rows
            Assert.False(Bf16Gemm.Applies(zeros(64, 1024, bf), zeros(1024, 2048, bf).narrow(1, 0, 1024), null));   // weight rows not packed
            Assert.False(Bf16Gemm.Applies(zeros(64, 1024, bf), zeros(10, 1024, bf), null));        // below the size threshold
            Assert.False(Bf16Gemm.Applies(zeros(1024, 64, bf).t(), w, null));                      // x's rows not unit-stride
            Bf16Gemm.Enabled = false;
            Assert.False(Bf16Gemm.Applies(zeros(64, 1024, bf), w, null));
        }
        finally { (Bf16Gemm.Forced, Bf16Gemm.Enabled) = (forced, true); }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Fixture_bf16_prefill_through_it_drifts_from_f32_no_more_than_through_libtorch(string name)
    {
        if (!Kernel) return;
        (bool forced, long min, bool? upcast) = (Bf16Gemm.Forced, SimdGemv.MinElements, Linear.UpcastBf16OnCpu);
        try
        {
            SimdGemv.MinElements = 0;
            Linear.UpcastBf16OnCpu = false;   // the libtorch side: native bf16 matmuls, not float32 copies
            var fx = GriffinFixture.Get(name);
            var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));   // several windows: one chunk of 96+ rows
            float[] Prefill(ScalarType dtype)
            {
                using var model = fx.LoadModel("model.bf16.safetensors", dtype);
                using var state = model.CreateState(1);
                using var logits = model.Forward([seq], state, [0], LogitsSelection.All);
                return Compare.Floats(logits);
            }
            var f32 = Prefill(ScalarType.Float32);   // the same bf16 weights in float32 arithmetic
            Bf16Gemm.Enabled = false;
            var torch = Prefill(ScalarType.BFloat16);
            Bf16Gemm.Enabled = true;
            Bf16Gemm.Forced = true;
            var before = Bf16Gemm.Elapsed;
            var kernel = Prefill(ScalarType.BFloat16);
            Assert.True(Bf16Gemm.Elapsed > before, "the prefill never reached the kernel");
            double dKernel = Compare.MaxAbsDiff(f32, kernel), dTorch = Compare.MaxAbsDiff(f32, torch);
            Assert.True(dKernel <= 1.25 * dTorch + 0.05, $"{name}: the kernel drifts {dKernel:F3} from f32, libtorch {dTorch:F3}");
            new ReferenceLogitsTests().Bf16_arithmetic_stays_within_the_drift_the_reference_shows(name);
        }
        finally { (Bf16Gemm.Forced, Bf16Gemm.Enabled, SimdGemv.MinElements, Linear.UpcastBf16OnCpu) = (forced, true, min, upcast); }
    }

    /// <summary>Every output within one bf16 rounding (8 significant bits) of its exact (float64) sum, plus float32 summation error.</summary>
    static void AssertRoundedOnce(Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        using var scope = NewDisposeScope();
        var exact = Compare.Floats(nn.functional.linear(x.to(ScalarType.Float64), w.to(ScalarType.Float64), b?.to(ScalarType.Float64)));
        var magnitude = Compare.Floats(nn.functional.linear(x.abs().to(ScalarType.Float64), w.abs().to(ScalarType.Float64), b?.abs().to(ScalarType.Float64)));
        var got = Compare.Floats(y.to(ScalarType.Float32));
        Assert.Equal(exact.Length, got.Length);
        for (int i = 0; i < got.Length; i++)
            Assert.True(Math.Abs(got[i] - exact[i]) <= Math.Abs(exact[i]) / 256 + 1e-5 * magnitude[i] + 1e-6, $"output {i}: {got[i]} vs {exact[i]}");
    }
}
