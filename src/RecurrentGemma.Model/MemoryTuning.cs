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

    /// <summary>What the start-up tuning found or did, for logs and bench headers.</summary>
    public static string Describe() =>
        $"{(Applied ? "heap kept (mmap off, no trim)" : "glibc's default heap")}, {_arenas}";

    static string _arenas = "arenas not checked";

    const string ArenaTunable = "glibc.malloc.arena_max";

    [DllImport("libc", EntryPoint = "execv", SetLastError = true)]
    static extern int ExecV([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr[] argv);

    /// <summary>
    /// Makes every thread allocate from glibc's one main heap, by running this program again with
    /// GLIBC_TUNABLES=glibc.malloc.arena_max=1 (glibc reads tunables only when a process starts,
    /// so the setting needs a fresh image: same executable, same arguments, same process id). Why:
    /// the engine thread, like every thread but the first, gets an arena of its own, whose heaps
    /// are at most 64 MiB; a block that does not fit in the current heap (a [64, 256k] float32
    /// logits tensor, the sampler's [16, 256k] temporaries) gets a fresh heap or mapping, which
    /// glibc unmaps again when it is freed whatever the trim setting — so each step faulted such
    /// blocks in afresh (~100 ms per 65 MB on the VMs measured; `bench --suite sampler`,
    /// docs/benchmarks.md). The main heap keeps what it held (<see cref="Apply"/>). Returns only
    /// when it did not re-run the program: already set (or set otherwise by the operator), not
    /// Linux, not the process's entry program (tests host the server in theirs), a debugger
    /// attached, RGEMMA_MALLOC_TUNING=0, or exec failed — each recorded for <see cref="Describe"/>.
    /// </summary>
    /// <param name="entry">the calling program's assembly; nothing happens unless it is the process's entry assembly.</param>
    public static void UseOneArena(System.Reflection.Assembly entry)
    {
        if (!OperatingSystem.IsLinux()) { _arenas = "arenas: not Linux"; return; }
        var tunables = Environment.GetEnvironmentVariable("GLIBC_TUNABLES") ?? "";
        var chosen = tunables.Split(':').FirstOrDefault(t => t.StartsWith(ArenaTunable + "=", StringComparison.Ordinal));
        if (chosen is not null)
        {
            _arenas = chosen == ArenaTunable + "=1" ? "one arena" : $"{chosen} from the environment";
            return;
        }
        if (Environment.GetEnvironmentVariable("RGEMMA_MALLOC_TUNING") == "0") { _arenas = "glibc's arenas (RGEMMA_MALLOC_TUNING=0)"; return; }
        if (System.Reflection.Assembly.GetEntryAssembly() != entry) { _arenas = "glibc's arenas (hosted in another program)"; return; }
        if (System.Diagnostics.Debugger.IsAttached) { _arenas = "glibc's arenas (a debugger is attached)"; return; }
        try
        {
            var args = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
            var argv = new IntPtr[args.Length + 1];
            for (int i = 0; i < args.Length; i++) argv[i] = Marshal.StringToCoTaskMemUTF8(args[i]);
            Console.Out.Flush();
            Console.Error.Flush();
            if (OpenMpTuning.SetEnv("GLIBC_TUNABLES", tunables.Length == 0 ? ArenaTunable + "=1" : $"{tunables}:{ArenaTunable}=1", 1) == 0)
                ExecV("/proc/self/exe", argv);   // returns only on failure
            _arenas = $"glibc's arenas (could not re-run the program: errno {Marshal.GetLastPInvokeError()})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DllNotFoundException or EntryPointNotFoundException)
        {
            _arenas = $"glibc's arenas (could not re-run the program: {e.GetType().Name})";
        }
    }

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
