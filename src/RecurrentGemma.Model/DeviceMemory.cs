using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>
/// Free and total memory of a CUDA device, for sizing the state pool the way vLLM's
/// gpu_memory_utilization does. TorchSharp exposes no memory query, so this asks the CUDA runtime
/// that the CUDA build of libtorch ships (cudaMemGetInfo). Null on the CPU, or where the runtime
/// cannot be found — callers then fall back to a fixed slot count.
/// </summary>
public static class DeviceMemory
{
    public sealed record Info(long FreeBytes, long TotalBytes);

    delegate int MemGetInfo(out nuint free, out nuint total);
    delegate int SetDevice(int device);

    public static Info? Query(Device device)
    {
        if (device.type != TorchSharp.DeviceType.CUDA) return null;
        foreach (var name in new[] { "libcudart.so", "libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0" })
        {
            if (!NativeLibrary.TryLoad(name, typeof(DeviceMemory).Assembly, null, out var lib)) continue;
            try
            {
                if (!NativeLibrary.TryGetExport(lib, "cudaMemGetInfo", out var query)) continue;
                if (NativeLibrary.TryGetExport(lib, "cudaSetDevice", out var set))
                    Marshal.GetDelegateForFunctionPointer<SetDevice>(set)(Math.Max(0, device.index));
                if (Marshal.GetDelegateForFunctionPointer<MemGetInfo>(query)(out var free, out var total) == 0)
                    return new Info((long)free, (long)total);
            }
            catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or MarshalDirectiveException) { }
        }
        return null;
    }
}
