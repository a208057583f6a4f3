using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>The parallel RG-LRU scan and the fused CPU pass against the sequential definition, and a forward that never syncs.</summary>
[Collection(nameof(ParallelScanTests))]   // flips a process-wide switch: never alongside the other model tests
[CollectionDefinition(nameof(ParallelScanTests), DisableParallelization = true)]
public class ParallelScanTests
{
    static (float[] Logits, float[][] States) Run(GriffinFixture fx, long[] seq, int chunk, RgLruScanPath path)
    {
        var saved = RgLru.Scan;
        RgLru.Scan = path;
        try
        {
            using var model = fx.LoadModel();
            using var state = model.CreateState(2);
            var logits = new List<float>();
            for (int at = 0; at < seq.Length; at += chunk)
                using (var l = model.Forward([seq[at..Math.Min(seq.Length, at + chunk)]], state, [1], LogitsSelection.All))
                    logits.AddRange(Compare.Floats(l));
            var states = Enumerable.Range(0, model.Config.NumHiddenLayers)
                .Where(l => model.Config.KindOf(l) == BlockKind.Recurrent)
                .Select(l => Compare.Floats(state.RnnOf(l, 1))).ToArray();
            return (logits.ToArray(), states);
        }
        finally { RgLru.Scan = saved; }
    }

    public static IEnumerable<object[]> Cases() =>
        GriffinFixture.All().SelectMany(f =>
        {
            int w = GriffinFixture.Get((string)f[0]).Config.AttentionWindowSize;
            return new[] { 1, 2, w - 1, w, w + 1, 2 * w + 3, 64 }.Distinct().Select(c => new object[] { f[0], c });
        });

    [Theory, MemberData(nameof(Cases))]
    public void Parallel_scan_equals_the_sequential_loop(string name, int chunk)
    {
        AssertSameAsSequential(name, chunk, RgLruScanPath.Parallel);
    }

    [Theory, MemberData(nameof(Cases))]
    public void Fused_cpu_pass_equals_the_sequential_loop(string name, int chunk)
    {
        AssertSameAsSequential(name, chunk, RgLruScanPath.Fused);
    }

    static void AssertSameAsSequential(string name, int chunk, RgLruScanPath path)
    {
        var fx = GriffinFixture.Get(name);
        var seq = fx.Ids(fx.Cases.GetProperty("c").GetProperty("sequence"));
        var (seqLogits, seqStates) = Run(fx, seq, chunk, RgLruScanPath.Sequential);
        var (logits, states) = Run(fx, seq, chunk, path);
        // Relative to the tensor's scale (max |Δ| ≤ 1e-5 · max |x|): the scan reassociates the
        // products and the fused pass has its own exp, so near-zero elements differ by rounding
        // of the large ones.
        Compare.Close(seqLogits, logits, 1e-5 * seqLogits.Max(Math.Abs), $"{name} chunk {chunk} {path} logits");
        for (int i = 0; i < seqStates.Length; i++)
            Compare.Close(seqStates[i], states[i], 1e-5 * seqStates[i].Max(Math.Abs), $"{name} chunk {chunk} {path} h of recurrent layer {i}");
    }

    [Fact]
    public void The_forward_pass_reads_nothing_back_from_the_device()
    {
        // Structural guard: a host sync inside the forward costs a GPU a pipeline stall per call.
        // Inputs come only through the step buffer (StepBuffer, ForwardBatch's plan), outputs only
        // through the engine's one download. Load-time preparation is outside the forward.
        var dir = Path.Combine(RepoPaths.Root, "src", "RecurrentGemma.Model");
        string[] forbidden = [".item<", ".cpu()", ".data<", "tensor(", ".ToArray()"];
        var files = Directory.GetFiles(Path.Combine(dir, "Modules"), "*.cs").Append(Path.Combine(dir, "ForwardBatch.cs")).Append(Path.Combine(dir, "RowExactForward.cs"));
        foreach (var file in files)
        {
            var lines = File.ReadAllLines(file);
            bool inPrepare = false;
            for (int i = 0; i < lines.Length; i++)
            {
                var line = lines[i];
                if (line.Contains("void Prepare()") || line.Contains("public LocalAttentionBlock(") || line.Contains("internal ForwardPlan(")) inPrepare = true;
                else if (line.StartsWith("    }", StringComparison.Ordinal)) inPrepare = false;
                if (inPrepare || line.TrimStart().StartsWith("//") || line.TrimStart().StartsWith("///")) continue;
                foreach (var f in forbidden)
                    Assert.False(line.Contains(f, StringComparison.Ordinal), $"{Path.GetFileName(file)}:{i + 1} syncs with the host in the forward: {line.Trim()}");
            }
        }
    }
}
