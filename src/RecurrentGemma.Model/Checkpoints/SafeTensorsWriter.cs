using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Checkpoints;

/// <summary>
/// Writes tensors in the safetensors format. Used to build test checkpoints (shards, other dtypes,
/// random 2B-shaped weights for the load benchmark) — the server itself never writes weights.
/// </summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var (name, t) in list)
        {
            long bytes = t.numel() * t.ElementSize;
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = DTypeName(t.dtype),
                ["shape"] = t.shape,
                ["data_offsets"] = new[] { offset, offset + bytes },
            };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8; // keep data 8-byte aligned, as the reference writer does
        json = [.. json, .. Enumerable.Repeat((byte)' ', pad)];

        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        fs.Write(BitConverter.GetBytes((long)json.Length));
        fs.Write(json);
        foreach (var (_, t) in list)
        {
            using var cpu = t.detach().cpu().contiguous();
            using var flat = cpu.view(-1);
            long per = Math.Max(1, (64L << 20) / cpu.ElementSize);
            for (long first = 0; first < flat.numel(); first += per)
            {
                using var part = flat.narrow(0, first, Math.Min(per, flat.numel() - first));
                fs.Write(part.bytes);
            }
        }
    }

    public static string DTypeName(ScalarType t) => t switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Float16 => "F16",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        _ => throw new NotSupportedException($"dtype {t} is not written"),
    };
}
