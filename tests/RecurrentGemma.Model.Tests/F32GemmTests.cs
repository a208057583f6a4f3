using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The model's own f32 GEMM (many rows of x: prefill chunks, big decode batches) against exact
/// sums on shapes that leave a tail in every blocking (rows of x past a multiple of 12, weight
/// rows past a panel of 32 and a block of 256, K past a block of 256), with strided rows of x and
/// leading dims; when it applies; and the fixture models still matching the reference with every
/// projection of 33+ rows through it.
/// </summary>
[Trait("Paths", "cpu-kernels")]   // tests of the CPU's own kernels: they need CpuPaths on (a GPU machine runs them on its CPU)
[Collection(nameof(SimdGemvTests))]   // flips process-wide switches: never alongside the other model tests
public class F32GemmTests
{
    static bool Kernel => F32Gemm.Available;

    [Fact]
    public void It_is_offered_on_every_cpu_with_avx512_where_the_system_allows_executable_mappings()
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported || !OperatingSystem.IsLinux()) return;
        Assert.True(F32Gemm.Available || F32Gemm.Status.Contains("executable mapping") || F32Gemm.Status.StartsWith("mmap failed"),
            F32Gemm.Status);   // a wrong decode of the committed bytes or a failed self-check lands here
    }

    [Theory]
    [InlineData(1, 1, 1, false)]
    [InlineData(5, 31, 17, true)]
    [InlineData(12, 32, 256, false)]
    [InlineData(13, 257, 513, true)]        // a second block of weight rows with one row, a third K block of one
    [InlineData(17, 70, 40, true)]          // the fewest rows it takes: one tile of 12 and one of 5
    [InlineData(24, 33, 512, false)]
    [InlineData(33, 600, 300, false)]
    [InlineData(100, 45, 260, true)]
    [InlineData(130, 1100, 96, true)]       // parts of 256 weight rows over the workers, a partial last one
    public void Linear_equals_exact_sums(int rows, int n, int k, bool withBias)
    {
        if (!Kernel) return;
        using var gen = new Generator(11);
        using var w = empty(n, k).normal_(0, 0.05, gen);
        using var b = empty(n).normal_(0, 0.1, gen);
        using var x = empty(rows, k).normal_(0, 1, gen);
        using var y = F32Gemm.Linear(x, w, withBias ? b : null);
        AssertExact(x, w, withBias ? b : null, y);
    }

    /// <summary>
    /// A few rows of x (a short seeded prompt alone in a row-exact forward) may skip the packing
    /// pass: the same rows then give the same bits as inside a 40-row packed call, so a prompt's
    /// projections do not depend on how many others shared its forward.
    /// </summary>
    [Theory]
    [InlineData(1, 31, 17, true)]
    [InlineData(3, 257, 513, false)]     // a last group of one weight row; K past its last tile of 16
    [InlineData(16, 70, 40, true)]
    [InlineData(21, 45, 260, true)]      // more rows than one pass takes (16 + 5)
    public void The_unpacked_path_gives_each_row_the_packed_paths_bits(int rows, int n, int k, bool withBias)
    {
        if (!Kernel) return;
        using var gen = new Generator(21);
        using var w = empty(n, k).normal_(0, 0.05, gen);
        using var b = empty(n).normal_(0, 0.1, gen);
        using var x = empty(40, k).normal_(0, 1, gen);
        var bias = withBias ? b : null;
        using var packed = F32Gemm.Linear(x, w, bias, unpacked: false);
        using var few = x.narrow(0, 7, rows);
        using var unpacked = F32Gemm.Linear(few, w, bias, unpacked: true);
        AssertExact(few, w, bias, unpacked);
        using var same = packed.narrow(0, 7, rows);
        Assert.True(unpacked.equal(same).all().item<bool>(), "the unpacked rows differ from the same rows packed");
    }

    [Fact]
    public void Rows_of_x_with_leading_dims_or_a_wider_row_stride_equal_exact_sums()
    {
        if (!Kernel) return;
        using var gen = new Generator(12);
        using var w = empty(70, 130).normal_(0, 0.05, gen);
        using var wide = empty(3, 15, 260).normal_(0, 1, gen);   // [B, T, 2K]; the kernel reads its second half
        using var x = wide.narrow(-1, 130, 130);
        Assert.Equal(260, SimdGemv.RowStride(x));
        using var y = F32Gemm.Linear(x, w, null);
        Assert.Equal(new long[] { 3, 15, 70 }, y.shape);
        using var packed = x.contiguous();
        AssertExact(packed.reshape(45, 130), w, null, y.reshape(45, 70));
    }

    [Fact]
    public void Only_many_rows_of_a_large_enough_f32_cpu_weight_take_it()
    {
        if (!Kernel) return;
        bool forced = F32Gemm.Forced;
        F32Gemm.Forced = true;
        try
        {
            using var w = zeros(1024, 1024);
            using var wide = zeros(1024, 2048);
            Assert.True(F32Gemm.Applies(zeros(F32Gemm.MinRows, 1024), w, null));
            Assert.True(F32Gemm.Applies(zeros(2, 40, 1024), w, zeros(1024)));
            Assert.False(F32Gemm.Applies(zeros(F32Gemm.MinRows - 1, 1024), w, null));   // SimdGemv's rows
            Assert.False(F32Gemm.Applies(zeros(64, 1024, ScalarType.BFloat16), w.to(ScalarType.BFloat16), null));
            Assert.False(F32Gemm.Applies(zeros(64, 1024), wide.narrow(1, 0, 1024), null));   // weight rows not packed
            Assert.False(F32Gemm.Applies(zeros(64, 1024), zeros(10, 1024), null));            // below the size threshold
            Assert.False(F32Gemm.Applies(zeros(1024, 64).t(), w, null));                       // x's rows not unit-stride
            F32Gemm.Enabled = false;
            Assert.False(F32Gemm.Applies(zeros(64, 1024), w, null));
        }
        finally { (F32Gemm.Forced, F32Gemm.Enabled) = (forced, true); }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void Fixture_models_match_the_reference_with_every_many_row_projection_through_it(string name)
    {
        if (!Kernel) return;
        (bool forced, long min) = (F32Gemm.Forced, SimdGemv.MinElements);
        (F32Gemm.Forced, SimdGemv.MinElements) = (true, 0);
        try
        {
            var before = F32Gemm.Elapsed;
            var logits = new ReferenceLogitsTests();
            logits.C_long_sequence_full_prefill_and_every_decode_path(name);   // 96 rows, prefixes of 7+ rows
            Assert.True(F32Gemm.Elapsed > before, "the prefill never reached the kernel");
            logits.Bf16_weights_upcast_to_f32_match_the_reference(name);
            new ChunkedPrefillTests().Chunked_prefill_equals_one_full_prefill(name, 40);
        }
        finally { (F32Gemm.Forced, SimdGemv.MinElements) = (forced, min); }
    }

    /// <summary>Every output within float32 rounding of its exact (float64) sum.</summary>
    static void AssertExact(Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        using var scope = NewDisposeScope();
        var exact = Compare.Floats(nn.functional.linear(x.to(ScalarType.Float64), w.to(ScalarType.Float64), b?.to(ScalarType.Float64)));
        var magnitude = Compare.Floats(nn.functional.linear(x.abs().to(ScalarType.Float64), w.abs().to(ScalarType.Float64), b?.abs().to(ScalarType.Float64)));
        var got = Compare.Floats(y);
        Assert.Equal(exact.Length, got.Length);
        for (int i = 0; i < got.Length; i++)
            Assert.True(Math.Abs(got[i] - exact[i]) <= 1e-5 * magnitude[i] + 1e-6, $"output {i}: {got[i]} vs {exact[i]}");
    }
}
