using System.Runtime.InteropServices;

namespace RecurrentGemma.Model;

/// <summary>
/// Keeps glibc from handing libtorch's large temporaries back to the kernel after every op.
/// By default glibc serves blocks over 128 KiB–32 MiB with mmap and unmaps them on free, so each
/// step faults its activations in afresh; on VMs that report freed pages to the host (virtio
/// free page reporting) first touch measured ~2.9 s/GiB against 0.12 s/GiB reused, and a 183M
/// f32 prefill took 306k page faults instead of 15k (docs/benchmarks.md). Serving from the heap
/// without trimming reuses the same pages step after step; peak memory is unchanged (the same
/// blocks are reused, not added). Applied once at start-up; RGEMMA_MALLOC_TUNING=0 turns it off.
/// </summary>
public static class MemoryTuning
{
    const int M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4;

    [DllImport("libc", EntryPoint = "mallopt")]
    static extern int Mallopt(int param, int value);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(nuint pad);

    /// <summary>
    /// Hands the heap's free memory back to the kernel once, after a phase that freed a lot of it
    /// (a checkpoint load's staging buffers): with trimming off, it would otherwise stay resident
    /// for the life of the process. Steps then reuse what they keep.
    /// </summary>
    public static void ReleaseFreeMemory()
    {
        if (!Applied) return;
        try { MallocTrim(0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    public static bool Applied { get; private set; }

    public static bool Apply()
    {
        if (Applied || !OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("RGEMMA_MALLOC_TUNING") == "0") return Applied;
        try
        {
            Applied = Mallopt(M_MMAP_MAX, 0) == 1 & Mallopt(M_TRIM_THRESHOLD, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }   // not glibc (musl): nothing to tune
        return Applied;
    }
}
