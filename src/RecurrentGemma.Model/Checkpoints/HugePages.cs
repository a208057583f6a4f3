using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Checkpoints;

/// <summary>
/// Asks Linux to back large CPU tensors with transparent huge pages (MADV_HUGEPAGE) before they
/// are first written. Fresh memory costs ~1 s per GiB of 4 KiB page faults on these VMs, which
/// dominated checkpoint loading; 2 MiB pages cut the faults 512-fold. Best effort: where THP is
/// off ("never"), or on other systems, nothing happens.
/// </summary>
static class HugePages
{
    const int MadvHugepage = 14;
    const long Huge = 2L << 20;

    [DllImport("libc", SetLastError = true)]
    static extern int madvise(IntPtr addr, UIntPtr length, int advice);

    static bool _unavailable;

    public static unsafe void Advise(Tensor t)
    {
        if (_unavailable || !OperatingSystem.IsLinux() || t.device_type != TorchSharp.DeviceType.CPU || !t.is_contiguous()) return;
        long bytes = t.numel() * t.ElementSize;
        if (bytes < 2 * Huge) return;
        // The tensor's start address, read through a one-element view (Span<byte> cannot span > 2 GiB).
        using var flat = t.view(-1);
        using var first = flat.narrow(0, 0, 1);
        IntPtr start;
        fixed (byte* p = first.bytes) start = (IntPtr)p;
        long begin = (start.ToInt64() + Huge - 1) & ~(Huge - 1);         // round in to whole huge pages
        long end = (start.ToInt64() + bytes) & ~(Huge - 1);
        if (end <= begin) return;
        try
        {
            madvise((IntPtr)begin, (UIntPtr)(ulong)(end - begin), MadvHugepage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true;
        }
    }
}
