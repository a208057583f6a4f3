namespace RecurrentGemma.Model;

/// <summary>CPU capabilities that change which kernels are fastest.</summary>
public static class CpuFeatures
{
    /// <summary>True when the CPU lists bf16 arithmetic (AVX512_BF16 or AMX-BF16). Reported only:
    /// whether bf16 matmuls are fast here is measured (<see cref="Modules.Bf16Upcast"/>).</summary>
    public static bool HasNativeBf16 { get; } = Detect();

    /// <summary>The CPU's model name as /proc/cpuinfo gives it (benchmark headers); "unknown" elsewhere.</summary>
    public static string ModelName { get; } = ReadModelName();

    static string ReadModelName()
    {
        try
        {
            if (OperatingSystem.IsLinux() && File.Exists("/proc/cpuinfo"))
                foreach (var line in File.ReadLines("/proc/cpuinfo"))
                    if (line.StartsWith("model name") && line.IndexOf(':') is var at and >= 0)
                        return line[(at + 1)..].Trim();
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return "unknown";
    }

    static bool Detect()
    {
        try
        {
            if (!OperatingSystem.IsLinux() || !File.Exists("/proc/cpuinfo")) return false;
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
                if (line.StartsWith("flags"))
                    return line.Split(' ').Any(f => f is "avx512_bf16" or "amx_bf16");
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }
}
