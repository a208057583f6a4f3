using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Checkpoints;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorEntry(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// Reads the safetensors container: an 8-byte little-endian header length, a JSON header
/// (<c>{name: {dtype, shape, data_offsets}}</c>, optional <c>__metadata__</c>), then raw
/// little-endian data. Data is read with large positional reads straight into tensor memory —
/// measured faster here than memory-mapping plus copy (see docs/benchmarks.md).
/// Every malformed-file case raises <see cref="InvalidDataException"/> naming the file.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    const long MaxHeaderBytes = 100L << 20;
    const int ChunkBytes = 16 << 20;

    readonly SafeFileHandle _handle;
    readonly long _dataStart;

    public string Path { get; }
    public long FileLength { get; }
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }

    SafeTensorsFile(string path, SafeFileHandle handle, long dataStart, long fileLength, Dictionary<string, SafeTensorEntry> entries)
    {
        Path = path; _handle = handle; _dataStart = dataStart; FileLength = fileLength; Entries = entries;
    }

    public static SafeTensorsFile Open(string path)
    {
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long length = RandomAccess.GetLength(handle);
            Span<byte> lenBytes = stackalloc byte[8];
            if (length < 8 || RandomAccess.Read(handle, lenBytes, 0) != 8)
                throw Corrupt(path, "file is shorter than the 8-byte header length");
            long headerLen = BinaryPrimitives.ReadInt64LittleEndian(lenBytes);
            if (headerLen <= 0 || headerLen > MaxHeaderBytes || 8 + headerLen > length)
                throw Corrupt(path, $"header length {headerLen} does not fit the file ({length} bytes)");
            var header = new byte[headerLen];
            if (RandomAccess.Read(handle, header, 8) != headerLen)
                throw Corrupt(path, "header is truncated");
            long dataStart = 8 + headerLen;
            var entries = ParseHeader(path, header, length - dataStart);
            return new SafeTensorsFile(path, handle, dataStart, length, entries);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    static Dictionary<string, SafeTensorEntry> ParseHeader(string path, byte[] header, long dataLength)
    {
        var entries = new Dictionary<string, SafeTensorEntry>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(header);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Corrupt(path, "header is not a JSON object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__") continue;
                var e = prop.Value;
                string dtype = e.GetProperty("dtype").GetString() ?? throw Corrupt(path, $"tensor {prop.Name} has no dtype");
                long[] shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                long[] offsets = e.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
                    throw Corrupt(path, $"tensor {prop.Name} has invalid data_offsets");
                var entry = new SafeTensorEntry(prop.Name, dtype, shape, offsets[0], offsets[1]);
                long expected = entry.ElementCount * ElementSize(path, entry);
                if (offsets[1] - offsets[0] != expected)
                    throw Corrupt(path, $"tensor {prop.Name} ({dtype} {entry.ShapeText}) needs {expected} bytes but data_offsets span {offsets[1] - offsets[0]}");
                if (offsets[1] > dataLength)
                    throw Corrupt(path, $"tensor {prop.Name} ends at byte {offsets[1]} of the data section, but the file holds only {dataLength} (truncated file?)");
                entries.Add(prop.Name, entry);
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw Corrupt(path, $"header is not valid safetensors JSON ({e.Message})");
        }
        return entries;
    }

    public static ScalarType ToScalarType(string path, SafeTensorEntry e) => e.DType switch
    {
        "F32" => ScalarType.Float32,
        "BF16" => ScalarType.BFloat16,
        "F16" => ScalarType.Float16,
        "F64" => ScalarType.Float64,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        _ => throw Corrupt(path, $"tensor {e.Name} has unsupported dtype {e.DType} (supported: F32, BF16, F16, F64, I64, I32)"),
    };

    static long ElementSize(string path, SafeTensorEntry e) => e.DType switch
    {
        "F32" or "I32" => 4,
        "BF16" or "F16" => 2,
        "F64" or "I64" => 8,
        "U8" or "I8" or "BOOL" => 1,
        _ => throw Corrupt(path, $"tensor {e.Name} has unsupported dtype {e.DType}"),
    };

    /// <summary>Reads a tensor into a new CPU tensor of the file's own dtype.</summary>
    public Tensor Read(string name)
    {
        var e = Entries.TryGetValue(name, out var found) ? found : throw new KeyNotFoundException($"{Path}: no tensor named {name}");
        var t = empty(e.Shape, ToScalarType(Path, e), CPU);
        try { ReadInto(e, t); }
        catch { t.Dispose(); throw; }
        return t;
    }

    /// <summary>Fills a contiguous CPU tensor of the entry's dtype and element count with its bytes.</summary>
    public void ReadInto(SafeTensorEntry e, Tensor destination)
    {
        if (destination.device_type != DeviceType.CPU || !destination.is_contiguous())
            throw new ArgumentException("destination must be a contiguous CPU tensor", nameof(destination));
        long total = e.End - e.Begin;
        if (destination.numel() * destination.ElementSize != total)
            throw new ArgumentException($"destination holds {destination.numel() * destination.ElementSize} bytes, {e.Name} has {total}");
        // Span<byte> is limited to 2 GiB, so large tensors are read through flat narrowed views.
        using var flat = destination.view(-1);
        long elemSize = destination.ElementSize;
        long perChunk = Math.Max(1, ChunkBytes / elemSize);
        for (long first = 0; first < flat.numel(); first += perChunk)
        {
            long n = Math.Min(perChunk, flat.numel() - first);
            using var part = flat.narrow(0, first, n);
            var span = part.bytes;
            long fileOffset = _dataStart + e.Begin + first * elemSize;
            int done = 0;
            while (done < span.Length)
            {
                int got = RandomAccess.Read(_handle, span[done..], fileOffset + done);
                if (got <= 0) throw Corrupt(Path, $"unexpected end of file while reading {e.Name}");
                done += got;
            }
        }
    }

    static InvalidDataException Corrupt(string path, string why) => new($"{path}: {why}");

    public void Dispose() => _handle.Dispose();
}
