using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The projection kernel of a row-exact forward (<see cref="RowExactForward"/>): the model's own
/// GEMM for its dtype (<see cref="F32Gemm"/>, <see cref="Bf16Gemm"/>), taken for every row count
/// rather than by timing. Each output is one row of x against one weight row, summed over K in
/// blocks and lanes fixed by K alone; the rows of x only decide how many such sums a call makes
/// and which thread makes them. So a row's outputs are the same bits whether 1 or 500 rows share
/// the call, at any offset, on one thread or several (measured for every slice of 1–511 rows,
/// docs/benchmarks.md; tested in RowExactForwardTests). libtorch's GEMM, the small-batch
/// passes and the up-cast path sum in other orders and are chosen by row count, so they stay out.
/// Up to 16 rows of x (a short prompt alone) the kernels may skip packing the weight, which a
/// few rows cannot repay: every sum is then made by the same operations in the same order, so
/// the bits stay the same (<see cref="GemmChoice.Unpacks"/>).
/// </summary>
public static class RowExactGemm
{
    /// <summary>Off switch for benchmarks and comparisons: off, the engine gives each seeded prompt a forward of its own.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Whether this dtype's kernel is here: the CPU, a mapped kernel that passed its
    /// self-check (AVX-512; bf16 also AVX512-BF16), switched on, and — for bf16 — even widths.</summary>
    public static bool Available(GriffinConfig c, ScalarType dtype, Device device)
    {
        if (!Enabled || device.type != DeviceType.CPU) return false;
        if (dtype == ScalarType.Float32) return F32Gemm.Enabled && F32Gemm.Available;
        long[] widths = [c.HiddenSize, c.LruWidth, (long)c.NumAttentionHeads * c.HeadDim, c.MlpWidth];
        return dtype == ScalarType.BFloat16 && Bf16Gemm.Enabled && Bf16Gemm.Available && widths.All(w => w % 2 == 0);
    }

    /// <summary>
    /// For benchmarks: whether a few rows of x skip the kernel's packing pass (same bits either
    /// way); null, the default: the choice timed on this machine (<see cref="GemmChoice.Unpacks"/>).
    /// </summary>
    public static bool? Unpacked { get; set; }

    /// <summary>Most rows of x that may skip the packing pass.</summary>
    public const int UnpackedMaxRows = GemmChoice.UnpackedMaxRows;

    /// <summary>For tests and benchmarks: whether a lone prompt chunk of 8–16 tokens takes a row-exact forward; null, the default: as timed.</summary>
    public static bool? LoneChunks { get; set; }

    /// <summary>Fewest tokens of a lone prompt chunk that may take a row-exact forward for speed.</summary>
    public const int LoneChunkMinRows = GemmChoice.LoneChunkMinRows;

    /// <summary>
    /// Whether a forward of one prompt chunk of <paramref name="tokens"/> tokens (no seed needed)
    /// is faster row-exact: 8 to 16 tokens — a new turn of a conversation whose state is parked
    /// is often that short — where the unpacked kernel timed faster than the small-batch passes
    /// that take so few rows otherwise (<see cref="GemmChoice.LoneChunkWins"/>). Never with the
    /// CPU's own paths off (<see cref="CpuPaths"/>: the step as a GPU runs it).
    /// </summary>
    public static bool TakesLoneChunk(int tokens, GriffinConfig c, ScalarType dtype, Device device) =>
        tokens >= LoneChunkMinRows && tokens <= UnpackedMaxRows && CpuPaths.On(device) && Available(c, dtype, device)
        && (LoneChunks ?? Choices(dtype).LoneChunkWins);

    /// <summary>
    /// Takes the timings the row-exact forward's few-row cases rest on now (at engine start), so
    /// that the first short prompt a server meets does not wait for them: whether to unpack, and
    /// whether a lone short chunk goes row-exact. Once per process; nothing where the kernels or
    /// the CPU's own paths are missing.
    /// </summary>
    public static void TimeChoices(GriffinConfig c, ScalarType dtype, Device device)
    {
        if (!CpuPaths.On(device) || !Available(c, dtype, device)) return;
        var choices = Choices(dtype);
        _ = choices.Unpacks(1);
        _ = choices.LoneChunkWins;
    }

    static GemmChoice Choices(ScalarType dtype) => dtype == ScalarType.Float32 ? F32Gemm.Choices : Bf16Gemm.Choices;

    /// <summary>x·Wᵀ + b for [rows, K] x in the weight's dtype (the caller checked <see cref="Available"/>).</summary>
    internal static Tensor Linear(Tensor x, Tensor weight, Tensor? bias) =>
        weight.dtype == ScalarType.Float32 ? F32Gemm.Linear(x, weight, bias, Unpacked) : Bf16Gemm.Linear(x, weight, bias, Unpacked);
}
