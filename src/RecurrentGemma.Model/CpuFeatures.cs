namespace RecurrentGemma.Model;

/// <summary>CPU capabilities that change which kernels are fastest.</summary>
public static class CpuFeatures
{
    /// <summary>True when the CPU computes bf16 natively (AVX512_BF16 or AMX-BF16).</summary>
    public static bool HasNativeBf16 { get; } = Detect();

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
