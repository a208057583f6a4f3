namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The per-core L2 cache size as the kernel reports it (Linux sysfs), for sizing blocks of weight
/// rows that several passes share (<see cref="SimdGemv"/>). Falls back to 1 MiB where it is not
/// reported. Callers take a fraction (a VM may also report more than it gets): on a 2-core Intel
/// Xeon with 2 MiB of L2, blocks of 512 KiB–1 MiB measured alike and 2 MiB slower.
/// </summary>
public static class CpuCache
{
    public static long L2Bytes { get; } = Read() ?? 1L << 20;

    static long? Read()
    {
        try
        {
            const string root = "/sys/devices/system/cpu/cpu0/cache";
            if (!Directory.Exists(root)) return null;
            foreach (var dir in Directory.GetDirectories(root, "index*"))
            {
                if (File.ReadAllText(Path.Combine(dir, "level")).Trim() != "2") continue;
                if (File.ReadAllText(Path.Combine(dir, "type")).Trim() == "Instruction") continue;
                return Parse(File.ReadAllText(Path.Combine(dir, "size")));
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>"2048K", "1M" or a plain byte count.</summary>
    public static long? Parse(string text)
    {
        var s = text.Trim();
        long unit = s.EndsWith('K') ? 1L << 10 : s.EndsWith('M') ? 1L << 20 : 1;
        if (unit > 1) s = s[..^1];
        return long.TryParse(s, out var v) && v > 0 ? v * unit : null;
    }
}
