using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The one gate of every CPU-only path in the model and the sampler: the C# and C kernels that
/// read a tensor's memory through a host pointer (projections, GEMMs, decode attention, the
/// RG-LRU scan, the fused step passes, the RMS norm rows, the soft cap's tails), the CPU's bf16
/// upcasts and window reads, top-p by selection on the host, and the loader's and the state's
/// copies straight into host memory. Each of them asks <see cref="On(Tensor)"/> before it runs.
///
/// Why a switch: a GPU runs none of these paths, only libtorch's tensor ops, and no GPU is at
/// hand where the tests run. Switched off, the CPU takes exactly the ops a GPU would take
/// (every path above falls back to its tensor form), so the same reference tests check the
/// GPU's code path here (PortablePathTests in the model and engine tests), and
/// <see cref="KernelReads"/> proves that no host-pointer read happened while it was off.
/// What stays CPU-shaped even then: the step buffer's upload (a GPU copies through pinned
/// memory, which needs the CUDA runtime) and the thread calibration (CPU threads only).
/// </summary>
public static class CpuPaths
{
    static long _reads;

    /// <summary>On (default): the CPU's own paths where they apply. Off: tensor ops only, as on a GPU.
    /// Process-wide: tests flip it only in a non-parallel collection.</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Whether a CPU-only path may take this tensor: switched on and a CPU tensor.</summary>
    public static bool On(Tensor t) => Enabled && t.device_type == DeviceType.CPU;

    /// <summary>Whether CPU-only paths may run on this device.</summary>
    public static bool On(Device device) => Enabled && device.type == DeviceType.CPU;

    /// <summary>Host-pointer reads of tensor memory by the kernels so far in this process (tests:
    /// none may happen while the switch is off).</summary>
    public static long KernelReads => Interlocked.Read(ref _reads);

    /// <summary>Counts one host-pointer read (the kernels through SimdGemv.Data; the sampler's top-p selection).</summary>
    public static void CountRead() => Interlocked.Increment(ref _reads);
}
