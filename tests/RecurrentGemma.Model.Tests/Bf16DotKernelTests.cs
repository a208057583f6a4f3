using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The AVX512-BF16 dot-product kernel: offered exactly where the CPU lists the instruction set
/// (checked against /proc/cpuinfo, a source independent of the CPUID read it uses), equal to exact
/// float32 sums rounded once to bf16 for one to 32 rows of x on shapes with tails in K and
/// uneven thread parts, equal to the C# kernels, and a fixture model's bf16 decode step (one row)
/// and batched decode (up to 16 rows) through it match libtorch's.
/// On a CPU without the instruction set these tests check only that it is not offered.
/// </summary>
[Collection(nameof(SimdGemvTests))]   // flips SimdGemv's process-wide switches
public class Bf16DotKernelTests
{
    static bool CpuInfoListsAvx512Bf16()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/cpuinfo")) return false;
        var flags = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags"));
        return flags is not null && flags.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("avx512_bf16");
    }

    [Fact]
    public void It_is_offered_exactly_where_the_cpu_lists_avx512_bf16()
    {
        // AVX-512 as the runtime allows it (an OS or DOTNET_EnableAVX512F=0 can turn it off).
        bool expected = CpuInfoListsAvx512Bf16() && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
            && System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64;
        Assert.Equal(expected, Bf16DotKernel.CpuHasAvx512Bf16);
        if (!expected)
        {
            Assert.False(Bf16DotKernel.Available);
            Assert.False(SimdGemv.UsesBf16Dot(1));
            return;
        }
        // Where the CPU has it, only a system that refuses executable memory may keep it away, never a wrong result.
        Assert.True(Bf16DotKernel.Available || Bf16DotKernel.Status.Contains("executable mapping") || Bf16DotKernel.Status.StartsWith("mmap failed"),
            Bf16DotKernel.Status);
    }

    [Theory]
    [InlineData(1027, 1001, true, 1)]     // K with a tail after the 128-wide body, odd K
    [InlineData(4096, 2560, false, 1)]
    [InlineData(7, 33, true, 1)]          // K shorter than one body step
    [InlineData(40001, 128, false, 1)]    // many rows, no tail
    [InlineData(513, 7680, true, 1)]      // the 2B MLP's down projection width
    [InlineData(1027, 1001, true, 2)]
    [InlineData(4095, 2560, false, 3)]
    [InlineData(7, 97, true, 4)]          // K shorter than the 64-wide body of three and four rows
    [InlineData(2049, 2560, true, 4)]
    [InlineData(1027, 1001, true, 5)]     // five to eight rows: two passes over each L2-sized block of weight rows
    [InlineData(40001, 64, false, 8)]     // many blocks
    [InlineData(4095, 2560, true, 7)]
    [InlineData(515, 130, false, 9)]      // nine to 32 rows: passes of four (four weight rows at a time) and a rest
    [InlineData(1027, 1001, true, 16)]    // weight rows not a multiple of four in a part
    [InlineData(4095, 2560, false, 13)]
    [InlineData(40001, 64, true, 32)]
    public void Dot_kernel_equals_exact_sums_rounded_once_and_the_csharp_kernel(int n, int k, bool withBias, int rows)
    {
        if (!Bf16DotKernel.Available) return;
        using var scope = NewDisposeScope();
        using var gen = new Generator(9);
        var w = empty(n, k).normal_(0, 0.05, gen).to(ScalarType.BFloat16);
        var b = empty(n).normal_(0, 0.1, gen).to(ScalarType.BFloat16);
        var x = empty(rows, 1, k).normal_(0, 1, gen).to(ScalarType.BFloat16);
        var exact = Compare.Floats(nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32), withBias ? b.to(ScalarType.Float32) : null));
        bool? before = SimdGemv.Bf16Dot;
        try
        {
            SimdGemv.Bf16Dot = true;
            Assert.True(SimdGemv.UsesBf16Dot(rows));
            var dot = SimdGemv.Linear(x, w, withBias ? b : null);
            Assert.Equal(new long[] { rows, 1, n }, dot.shape);
            Assert.Equal(ScalarType.BFloat16, dot.dtype);
            var d = Compare.Floats(dot.to(ScalarType.Float32));
            for (int i = 0; i < rows * n; i++)
                Assert.True(Math.Abs(d[i] - exact[i]) <= Math.Abs(exact[i]) / 256 + 1e-5, $"output {i}: {d[i]} vs {exact[i]}");
            SimdGemv.Bf16Dot = false;
            Assert.False(SimdGemv.UsesBf16Dot(rows));
            var vector = Compare.Floats(SimdGemv.Linear(x, w, withBias ? b : null).to(ScalarType.Float32));
            // Both round float32 sums of the same products once; only the summation order differs.
            for (int i = 0; i < rows * n; i++)
                Assert.True(Math.Abs(d[i] - vector[i]) <= Math.Abs(exact[i]) / 128 + 1e-5, $"output {i}: dot {d[i]} vs C# {vector[i]}");
        }
        finally { SimdGemv.Bf16Dot = before; }
    }

    [Fact]
    public void Up_to_32_rows_of_x_take_it_and_rows_that_are_a_narrow_of_a_wider_tensor_work()
    {
        if (!Bf16DotKernel.Available) return;
        bool? before = SimdGemv.Bf16Dot;
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        try
        {
            (SimdGemv.Bf16Dot, SimdGemv.Forced, SimdGemv.MinElements) = (true, true, 0);
            Assert.True(SimdGemv.UsesBf16Dot(4));
            Assert.True(SimdGemv.UsesBf16Dot(8));
            Assert.True(SimdGemv.UsesBf16Dot(9));    // beyond eight: more passes of four
            Assert.True(SimdGemv.UsesBf16Dot(SimdGemv.MaxPassRows));
            Assert.False(SimdGemv.UsesBf16Dot(SimdGemv.MaxPassRows + 1));   // more: libtorch's GEMM
            using var scope = NewDisposeScope();
            using var gen = new Generator(10);
            long k = 640;
            var w = empty(300, k).normal_(0, 0.05, gen).to(ScalarType.BFloat16);
            var wide = empty(3, 1, 2 * k).normal_(0, 1, gen).to(ScalarType.BFloat16);
            var x = wide.narrow(-1, k, k);   // rows 2K apart, as the MLP's gated half
            var three = SimdGemv.Linear(x, w, null);
            var torch = nn.functional.linear(x.contiguous().to(ScalarType.Float32), w.to(ScalarType.Float32), null);
            Compare.Close(Compare.Floats(torch.to(ScalarType.BFloat16).to(ScalarType.Float32)), Compare.Floats(three.to(ScalarType.Float32)), 0.02, "three strided rows");
            var one = SimdGemv.Linear(x.narrow(0, 1, 1), w, null);   // a row at an offset into its storage
            Compare.Close(Compare.Floats(three.narrow(0, 1, 1).to(ScalarType.Float32)), Compare.Floats(one.to(ScalarType.Float32)), 0.02, "row 1 alone");
            var five = empty(5, 1, 2 * k).normal_(0, 1, gen).to(ScalarType.BFloat16).narrow(-1, 0, k);   // five strided rows: passes of four and one
            Compare.Close(Compare.Floats(nn.functional.linear(five.contiguous().to(ScalarType.Float32), w.to(ScalarType.Float32), null).to(ScalarType.BFloat16).to(ScalarType.Float32)),
                Compare.Floats(SimdGemv.Linear(five, w, null).to(ScalarType.Float32)), 0.02, "five strided rows");
            var many = empty(18, 1, 2 * k).normal_(0, 1, gen).to(ScalarType.BFloat16).narrow(-1, k, k);   // 18 strided rows: four passes of four and one of two
            var manyExpected = Compare.Floats(nn.functional.linear(many.contiguous().to(ScalarType.Float32), w.to(ScalarType.Float32), null).to(ScalarType.BFloat16).to(ScalarType.Float32));
            Compare.Close(manyExpected, Compare.Floats(SimdGemv.Linear(many, w, null).to(ScalarType.Float32)), 0.02, "18 strided rows");
            SimdGemv.Bf16Dot = false;   // the C# loops take as many rows, in the same passes
            Assert.False(SimdGemv.UsesBf16Dot(18));
            Compare.Close(manyExpected, Compare.Floats(SimdGemv.Linear(many, w, null).to(ScalarType.Float32)), 0.02, "18 strided rows through the C# loops");
        }
        finally { (SimdGemv.Bf16Dot, SimdGemv.Forced, SimdGemv.MinElements) = (before, forced, min); }
    }

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Theory, MemberData(nameof(GriffinFixture.All), MemberType = typeof(GriffinFixture))]
    public void A_fixture_bf16_decode_step_through_it_matches_libtorch(string name)
    {
        if (!Bf16DotKernel.Available) return;
        bool? before = SimdGemv.Bf16Dot;
        (bool forced, long min) = (SimdGemv.Forced, SimdGemv.MinElements);
        try
        {
            (SimdGemv.Forced, SimdGemv.MinElements) = (true, 0);
            Bf16Gemm.Enabled = false;   // the prompts' many rows go to libtorch every time, not by a timing
            var fx = GriffinFixture.Get(name);
            var d = fx.Cases.GetProperty("d");
            var prompt = fx.Ids(d.GetProperty("prompt"));
            // A prefill and one decode step for `rows` sequences (prompts of different lengths, so
            // different positions); the prompts' rows go through the kernels too (up to 32 in bf16).
            float[] Step(int rows, ScalarType dtype)
            {
                using var model = dtype == ScalarType.Float32 ? fx.LoadModel() : fx.LoadModel("model.bf16.safetensors", ScalarType.BFloat16);
                using var state = model.CreateState(rows);
                var slots = Enumerable.Range(0, rows).Select(i => (long)i).ToArray();
                var prompts = Enumerable.Range(0, rows).Select(i => (IReadOnlyList<long>)prompt.Take(Math.Max(1, prompt.Length - i)).ToArray()).ToList();
                using (model.Forward(prompts, state, slots)) { }
                var next = Enumerable.Range(0, rows).Select(i => (IReadOnlyList<long>)new long[] { prompt[^(i % prompt.Length + 1)] }).ToList();
                using var step = model.Forward(next, state, slots);
                return Compare.Floats(step);
            }
            // bf16 rounding drifts through the layers whichever way the sums are ordered, and more
            // so with more rows (the reference's own bf16 run drifts ~1.0 from f32). So each bf16
            // path is measured against the same model in f32 (bf16 weights, float32 arithmetic):
            // the dot kernel may drift no more than libtorch's bf16 path does, with a margin for
            // the order of the roundings.
            foreach (int rows in new[] { 1, 3, 6, 16 })
            {
                var f32 = Step(rows, ScalarType.Float32);
                SimdGemv.Bf16Dot = true;
                long bytes = SimdGemv.Totals.WeightBytes;
                var dot = Step(rows, ScalarType.BFloat16);
                Assert.True(SimdGemv.Totals.WeightBytes > bytes, $"{rows} rows went through the kernels");
                SimdGemv.Bf16Dot = false;
                var loops = Step(rows, ScalarType.BFloat16);
                SimdGemv.Enabled = false;
                float[] torch;
                try { torch = Step(rows, ScalarType.BFloat16); }
                finally { SimdGemv.Enabled = true; }
                double dDot = Compare.MaxAbsDiff(f32, dot), dLoops = Compare.MaxAbsDiff(f32, loops), dTorch = Compare.MaxAbsDiff(f32, torch);
                // Measured on the fixtures: dot 0.18–0.59, libtorch 0.24–0.52 (1–16 rows).
                Assert.True(dDot <= 1.25 * dTorch + 0.05, $"{name}, {rows} rows: the dot kernel drifts {dDot:F3} from f32, libtorch {dTorch:F3}");
                Assert.True(dLoops <= 1.25 * dTorch + 0.05, $"{name}, {rows} rows: the C# loops drift {dLoops:F3} from f32, libtorch {dTorch:F3}");
                Compare.Close(torch, dot, 0.5, $"{name} bf16 step of {rows} rows, dot kernel vs libtorch");
            }
        }
        finally { (SimdGemv.Bf16Dot, SimdGemv.Forced, SimdGemv.MinElements, Bf16Gemm.Enabled) = (before, forced, min, true); }
    }
}
