using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>Turns a configured device name into a torch device, at run time.</summary>
public static class TorchDevices
{
    /// <param name="name">"auto" (cuda when available, else cpu), "cpu", "cuda" or "cuda:N".</param>
    public static Device Resolve(string? name)
    {
        name = string.IsNullOrWhiteSpace(name) ? "auto" : name.Trim().ToLowerInvariant();
        if (name == "auto") return cuda.is_available() ? CUDA : CPU;
        if (name == "cpu") return CPU;
        if (name.StartsWith("cuda"))
        {
            if (!cuda.is_available())
                throw new InvalidOperationException("device 'cuda' was requested but CUDA is not available (this build uses the CPU libtorch; build with -p:TorchBackend=cuda on a GPU host)");
            return new Device(name);
        }
        throw new ArgumentException($"unknown device '{name}' (expected auto, cpu or cuda)");
    }

    /// <summary>"auto": bf16 on a GPU (half the bytes per decode step, native tensor cores), f32 on
    /// the CPU (the exact reference arithmetic; bf16 is a measured choice there, docs/benchmarks.md).</summary>
    public static ScalarType ResolveDType(string? name, Device device) =>
        string.IsNullOrWhiteSpace(name) || name.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)
            ? (device.type == TorchSharp.DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32)
            : ParseDType(name);

    public static ScalarType ParseDType(string? name) => (name ?? "f32").Trim().ToLowerInvariant() switch
    {
        "f32" or "float32" or "fp32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        var other => throw new ArgumentException($"unknown dtype '{other}' (expected auto, f32 or bf16)"),
    };
}
