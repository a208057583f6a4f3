using System.Runtime.InteropServices;

namespace RecurrentGemma.Model;

/// <summary>
/// Shortens how long libtorch's OpenMP threads spin after a parallel op before they sleep.
/// libtorch's CPU build runs its threaded ops on GNU OpenMP (libgomp), whose threads, with no
/// wait policy set, spin 300,000 times after each parallel region — milliseconds on the CPUs
/// measured. The model's own CPU kernels (<see cref="Modules.KernelWorkers"/>: the SIMD
/// projections, the fused RG-LRU step and decode attention, the GEMMs) run between libtorch's
/// ops on the same cores, so after any threaded libtorch op a spinning OpenMP thread held the
/// core the kernels' second thread needed: a 2B f32 batch-1 step with libtorch's attention at a
/// full window took 248 ms against 200 ms with the spin cut to 10,000, and the same cut raised
/// prefill from ~58 to ~70 tokens/s and batch-64 decode from ~30 to ~36 tokens/s (two processes
/// of each, alternating; docs/benchmarks.md, issue #9). 10,000 spins still bridge the
/// microsecond gaps between libtorch's own back-to-back ops.
/// libgomp reads its settings once, when libtorch is loaded, so this must run before the first
/// torch call (the server's and the CLI's first statement, beside <see cref="MemoryTuning"/>).
/// A GOMP_SPINCOUNT or OMP_WAIT_POLICY already in the environment is left as it is;
/// RGEMMA_GOMP_SPINCOUNT sets another count, or "default" keeps libgomp's own.
/// </summary>
public static class OpenMpTuning
{
    /// <summary>The spin count set when nothing else asks for one.</summary>
    public const string DefaultSpinCount = "10000";

    /// <summary>libc's setenv: the native environment, which .NET's own setter does not reach on Linux.</summary>
    [DllImport("libc", EntryPoint = "setenv")]
    internal static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    [DllImport("libc", EntryPoint = "getenv")]
    static extern IntPtr GetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name);

    /// <summary>What <see cref="Apply"/> found or did, for start-up logs and bench headers.</summary>
    public static string Describe() => _outcome;

    static string _outcome = "not applied";
    static bool _applied, _set;

    /// <summary>
    /// Sets GOMP_SPINCOUNT in the process environment (the native one libgomp reads; .NET's
    /// Environment.SetEnvironmentVariable does not reach it on Linux) unless the user chose a
    /// policy. Returns whether the count is now one this class set.
    /// </summary>
    public static bool Apply()
    {
        if (_applied) return _set;
        _applied = true;
        if (!OperatingSystem.IsLinux()) { _outcome = "not Linux: libgomp's default"; return false; }
        try
        {
            if (Native("GOMP_SPINCOUNT") is { } user) { _outcome = $"GOMP_SPINCOUNT={user} from the environment"; return false; }
            if (Native("OMP_WAIT_POLICY") is { } policy) { _outcome = $"OMP_WAIT_POLICY={policy} from the environment"; return false; }
            string count = Environment.GetEnvironmentVariable("RGEMMA_GOMP_SPINCOUNT") ?? DefaultSpinCount;
            if (count == "default") { _outcome = "libgomp's default (RGEMMA_GOMP_SPINCOUNT=default)"; return false; }
            if (!long.TryParse(count, out long n) || n < 0)
            {
                _outcome = $"libgomp's default (RGEMMA_GOMP_SPINCOUNT='{count}' is not a count)";
                return false;
            }
            if (SetEnv("GOMP_SPINCOUNT", n.ToString(System.Globalization.CultureInfo.InvariantCulture), 0) != 0)
            {
                _outcome = "libgomp's default (setenv failed)";
                return false;
            }
            _outcome = $"spin count {n} (set at start-up)";
            return _set = true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _outcome = "libgomp's default (no libc setenv)";
            return false;
        }
    }

    /// <summary>A variable of the native environment (what libgomp will read), or null.</summary>
    public static string? Native(string name)
    {
        try
        {
            IntPtr p = GetEnv(name);
            return p == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(p);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }
}
