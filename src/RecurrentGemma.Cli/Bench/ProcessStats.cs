using System.Runtime.InteropServices;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// This process's page faults and memory, from /proc (Linux; zeros elsewhere). Benchmarks report
/// faults per step because on VMs that hand freed memory back to the host every fault on fresh
/// memory costs far more than the arithmetic it serves (docs/platform.md).
/// </summary>
public static class ProcessStats
{
    /// <summary>Minor + major page faults so far.</summary>
    public static long PageFaults()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7]) + long.Parse(fields[9]);   // minflt, majflt (fields 10 and 12 of the whole line)
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException) { return 0; }
    }

    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2 { public nuint Arena, OrdBlks, SmBlks, HBlks, HBlkHd, UsmBlks, FsmBlks, UordBlks, FordBlks, KeepCost; }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    static extern MallInfo2 MallInfo();

    static bool _noMallInfo;

    /// <summary>
    /// Bytes the C heap has handed out and not had back (glibc's mallinfo2: chunks in use in every
    /// arena plus mmapped blocks) — where libtorch's CPU tensors live — or -1 where that cannot be
    /// read (not glibc, or older than 2.33).
    /// </summary>
    public static long HeapInUse()
    {
        if (_noMallInfo || !OperatingSystem.IsLinux()) return -1;
        try
        {
            var m = MallInfo();
            return (long)(m.UordBlks + m.HBlkHd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _noMallInfo = true;
            return -1;
        }
    }

    /// <summary>Resident set size now and at its peak, in bytes.</summary>
    public static (long Rss, long Peak) Memory()
    {
        long rss = 0, peak = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = Kb(line);
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal)) peak = Kb(line);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return (rss, peak);
        static long Kb(string line) => long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }

    /// <summary>
    /// Starts the peak (VmHWM) afresh from the current RSS (Linux: "5" to /proc/self/clear_refs),
    /// so that one phase's peak can be read on its own. False where that is not possible.
    /// </summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException) { return false; }
    }

    /// <summary>Seconds per GiB to first-touch fresh memory, and to touch it again (reused).</summary>
    public static (double Fresh, double Reused) TouchCost(int mib = 256)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var block = GC.AllocateUninitializedArray<byte>(mib << 20, pinned: true);
        for (int i = 0; i < block.Length; i += 4096) block[i] = 1;
        double fresh = clock.Elapsed.TotalSeconds;
        clock.Restart();
        for (int i = 0; i < block.Length; i += 4096) block[i] = 2;
        double reused = clock.Elapsed.TotalSeconds;
        GC.KeepAlive(block);
        return (fresh * 1024 / mib, reused * 1024 / mib);
    }
}
