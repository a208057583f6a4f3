using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Whether a CPU decode step computes each sequence's row exactly — to the bit — as it would
/// alone, whatever else is in the batch (up to <see cref="MaxRows"/> rows). A seeded request
/// then gives the same text alone and in any mix of requests: its uniform draws depend only on
/// its seed (the sampler), so the only thing left that could move a token is the logits, and a
/// last-bit difference (~1e-5 on the fixtures, from libtorch picking another GEMV/GEMM kernel for
/// another row count) flips a sampled token whenever a draw lands that close to a boundary of the
/// cumulative distribution (the engine's seeded-batch test failed ~1 run in 10 that way).
///
/// Floating-point sums depend on their order, so every piece of the step that sums fixes its
/// order per row, independent of the row count: the projections run through the small-batch
/// kernels (<see cref="SimdGemv"/>) for every weight size and every row count up to
/// <see cref="MaxRows"/>, whose one-row, row-by-row, 2–4-row and pass-of-four loops share one
/// order per (row of x, output) — two accumulators taking K's vectors in turn, added, the lanes
/// summed, then the tail (GemvKernels.RowF32 / RowBf16) — rather than wherever timing put
/// libtorch or the GEMMs (those sum in other orders); the bf16 dot-product kernel shares one order
/// across its row counts too and is taken for all row counts or none; the RMS norm, the fused
/// RG-LRU step and the GELU gate take their row-at-a-time passes up to the same count; decode
/// attention always takes its fused pass and cuts a row's keys into ranges by the key count
/// alone, not by how many rows share the cores; the soft cap's last few logits go through the
/// vector function like the rest. The tests compare every row of batches of 1–16 bit for bit with
/// the row alone (f32 and bf16, the AVX-512 and AVX2 loops and the dot-product kernel), and the
/// engine's logprobs of a seeded request alone and in mixed batches.
///
/// <see cref="MaxRows"/> is 16, the engine's default limit of running sequences: at 32 rows the
/// f32 GEMM the timing picks is ~1.45× faster than the kernels' passes (2B step on the 2-core
/// EPYC; docs/benchmarks.md), a price the guarantee should not charge by default. A larger
/// Engine:MaxRunningSequences lets steps pass it, and those steps round as the timing chooses.
/// Not covered either: devices other than the CPU (cuBLAS picks kernels by shape). Prefill is
/// covered by a forward of its own kind: the engine prefills seeded prompts in a row-exact
/// forward (<see cref="RowExactForward"/>; Scheduler), where the model's GEMMs serve.
/// Off, each bucket of rows takes whichever kernel timed fastest on this machine.
/// </summary>
public static class BatchInvariance
{
    /// <summary>Most rows of a step the guarantee covers (the engine's default running sequences; why not 32: above).</summary>
    public const int MaxRows = 16;

    /// <summary>On by default; <c>Model:BatchInvariant=false</c> trades the guarantee for the per-bucket fastest kernels.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Whether the guarantee applies to a CPU step of this many rows with the kernels available.</summary>
    internal static bool Covers(long rows) =>
        Enabled && rows >= 1 && rows <= MaxRows && SimdGemv.Enabled && SimdGemv.Supported;

    /// <summary>Whether a projection of x through this weight takes the small-batch kernels because of the guarantee.</summary>
    internal static bool TakesProjection(Tensor x, Tensor weight, Tensor? bias) =>
        Enabled && SimdGemv.Structural(x, weight, bias, out long rows) && Covers(rows);

    /// <summary>For the start-up log and the benchmark headers.</summary>
    public static string Describe() => Enabled
        ? $"on (a decode step of up to {MaxRows} rows computes each row as it would alone)"
        : "off (each bucket of rows takes its fastest kernel; seeded sampling can depend on the batch)";
}
