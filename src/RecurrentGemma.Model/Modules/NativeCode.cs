using System.Runtime.InteropServices;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Places committed machine code (<see cref="Bf16DotCode"/>, <see cref="F32GemmCode"/>, <see cref="Bf16GemmCode"/>, written by
/// scripts/native-kernels.sh from the C in Native/) where it can run: copied into an anonymous
/// page that is then made executable, the way a JIT places code. Linux x86-64 only, the calling
/// convention it was compiled for; the caller checks the results before offering the kernel.
/// </summary>
internal static unsafe class NativeCode
{
    /// <summary>
    /// Maps <paramref name="code"/> and runs <paramref name="selfCheck"/> on it (null: every result
    /// right); the entry with <paramref name="ready"/>, or 0 with the reason the kernel is not offered.
    /// A mapping that passed is kept for the life of the process.
    /// </summary>
    public static (nint Entry, string Status) Load(ReadOnlySpan<byte> code, Func<nint, string?> selfCheck, string ready)
    {
        var (page, error) = Map(code);
        if (error is not null) return (0, error);
        string? wrong = selfCheck(page);
        if (wrong is null) return (page, ready);
        munmap(page, Size(code));
        return (0, "self-check failed: " + wrong);
    }

    /// <summary>The entry (the code's first byte) or 0 with the reason.</summary>
    static (nint Entry, string? Error) Map(ReadOnlySpan<byte> code)
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return (0, "not Linux x86-64");
        const int read = 1, write = 2, exec = 4, privateAnonymous = 0x02 | 0x20;
        nuint size = Size(code);
        nint page = mmap(0, size, read | write, privateAnonymous, -1, 0);
        if (page == -1) return (0, $"mmap failed (errno {Marshal.GetLastPInvokeError()})");
        code.CopyTo(new Span<byte>((void*)page, code.Length));
        if (mprotect(page, size, read | exec) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            munmap(page, size);
            return (0, $"the system refused an executable mapping (errno {errno})");
        }
        return (page, null);
    }

    static nuint Size(ReadOnlySpan<byte> code) => (nuint)((code.Length + 4095) & ~4095);

    [DllImport("libc", SetLastError = true)]
    static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", SetLastError = true)]
    static extern int mprotect(nint addr, nuint length, int prot);

    [DllImport("libc", SetLastError = true)]
    static extern int munmap(nint addr, nuint length);
}
