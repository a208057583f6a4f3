using System.Collections.Concurrent;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// The CPU kernels' timed decisions (SIMD GEMV or libtorch, the bf16 dot product or the C# loop,
/// the model's GEMMs or the other path, bf16 up-casting, the decode-attention crossover), kept in
/// a file so that the next process on the same machine and build takes the same ones.
///
/// Why: each decision is timed once per process, and where two paths run close a noisy timing can
/// choose the other one after a restart (bf16 projections of 17–32 rows, SIMD passes or libtorch:
/// the other way in 3 of 10 fresh processes on the 2-core EPYC, docs/benchmarks.md). The two
/// paths sum in different orders, so the logits differ in their last bits and a seeded request's
/// text can change with them: the seed's promise — the same text after a restart — would then
/// hold only by luck. Replicas that share one file (a volume) and start after it was written take
/// the same kernels too. The decisions stay measured, never chosen by CPU model: the file holds
/// what this machine measured, and a file written on another CPU, core count, thread count or
/// build (its fingerprint) is ignored and replaced.
///
/// Without <see cref="UseFile"/> (tests, benchmarks) every process times its own decisions.
/// </summary>
public static class KernelChoices
{
    /// <summary>A decision: its value (1/0 for a yes/no, else a number) and the timings it was made from (for the logs).</summary>
    public sealed record Entry(double Value, double[] Timings, string? Summary = null);

    static readonly object Gate = new();
    static readonly ConcurrentDictionary<string, Entry> Known = new();
    static string? _path, _fingerprint;
    static int _recalled;
    static string? _writeFailure;

    /// <summary>The file in use (null: decisions are not kept).</summary>
    public static string? FilePath => _path;

    /// <summary>Decisions this process took from the file rather than timing them.</summary>
    public static int Recalled => _recalled;

    /// <summary>libtorch's thread count when this process first looked: what it was configured with
    /// (OMP_NUM_THREADS, the cores), not what a running engine set for its current step — the
    /// engine moves the process-wide count between one thread and all per decode step, and a file
    /// written or read in such a moment would otherwise carry, or be refused for, the wrong count.</summary>
    static readonly int ConfiguredThreads = TorchSharp.torch.get_num_threads();

    /// <summary>What identifies the machine and build the timings hold for: the CPU's name, core
    /// count and vector extensions, libtorch's configured thread count, and this assembly's build.</summary>
    public static string Fingerprint() => string.Join("|",
        CpuFeatures.ModelName, Environment.ProcessorCount,
        $"avx512f={Avx512F.IsSupported},avx512bw={Avx512BW.IsSupported},avx2={Avx2.IsSupported},fma={Fma.IsSupported},bf16={CpuFeatures.HasNativeBf16}",
        $"threads={ConfiguredThreads}",
        typeof(KernelChoices).Assembly.ManifestModule.ModuleVersionId);

    /// <summary>
    /// Keeps decisions in <paramref name="path"/> from now on: reads the ones it holds (when it was
    /// written for this fingerprint) and writes each new one. Returns a line for the start-up log.
    /// Decisions already taken in this process stay as they are.
    /// </summary>
    public static string UseFile(string path)
    {
        lock (Gate)
        {
            _path = Path.GetFullPath(path);
            _writeFailure = null;
            string fingerprint = _fingerprint = Fingerprint();   // now: the engine later changes the thread count step by step
            if (!File.Exists(_path)) return $"none yet in {_path}: timed now, kept there";
            try
            {
                var root = JsonNode.Parse(File.ReadAllText(_path)) as JsonObject ?? throw new JsonException("not a JSON object");
                if ((string?)root["fingerprint"] != fingerprint)
                    return $"{_path} was written on another machine or build: timed again, replaced";
                int read = 0;
                foreach (var (key, node) in root["choices"] as JsonObject ?? [])
                {
                    if (node is not JsonObject o || o["value"] is not JsonValue v || !v.TryGetValue<double>(out double value)) continue;
                    double[] timings = [.. (o["timings"] as JsonArray ?? []).Select(t => t is JsonValue tv && tv.TryGetValue<double>(out double d) ? d : 0)];
                    if (Known.TryAdd(key, new Entry(value, timings, (string?)o["summary"]))) read++;
                }
                return $"{read} read from {_path}";
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or InvalidOperationException or FormatException)
            {
                return $"{_path} unreadable ({e.Message}): timed again, replaced";
            }
        }
    }

    /// <summary>Stops keeping decisions and forgets the ones read or taken (tests).</summary>
    public static void Reset()
    {
        lock (Gate) { _path = _fingerprint = null; _recalled = 0; _writeFailure = null; Known.Clear(); }
    }

    /// <summary>Why the last write of the file failed (null: it did not).</summary>
    public static string? WriteFailure => _writeFailure;

    /// <summary>
    /// The decision named <paramref name="key"/>: the one this process already holds for it (read
    /// from the file), else <paramref name="measure"/>'s, recorded (and written, when a file is in use).
    /// </summary>
    public static Entry Decide(string key, Func<Entry> measure)
    {
        if (Known.TryGetValue(key, out var known))
        {
            Interlocked.Increment(ref _recalled);
            return known;
        }
        var entry = measure();
        lock (Gate)
        {
            entry = Known.GetOrAdd(key, entry);
            if (_path is not null) Write();
        }
        return entry;
    }

    /// <summary>
    /// The decision this process holds for <paramref name="key"/>, read from the file or taken
    /// earlier, without timing anything (for callers that measure on their own terms).
    /// </summary>
    public static bool TryRecall(string key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Entry? entry)
    {
        if (!Known.TryGetValue(key, out entry)) return false;
        Interlocked.Increment(ref _recalled);
        return true;
    }

    /// <summary>
    /// Sets <paramref name="key"/> to <paramref name="entry"/>, replacing what was held (a choice
    /// learned while running supersedes the start-up timing), and writes the file when one is in use.
    /// </summary>
    public static void Record(string key, Entry entry)
    {
        lock (Gate)
        {
            Known[key] = entry;
            if (_path is not null) Write();
        }
    }

    /// <summary>The whole file, replaced at once (a reader never sees half of it).</summary>
    static void Write()
    {
        var choices = new JsonObject();
        foreach (var (key, e) in Known.OrderBy(k => k.Key, StringComparer.Ordinal))
        {
            var o = new JsonObject { ["value"] = e.Value, ["timings"] = new JsonArray([.. e.Timings.Select(t => (JsonNode)JsonValue.Create(Math.Round(t, 4)))]) };
            if (e.Summary is not null) o["summary"] = e.Summary;
            choices[key] = o;
        }
        var root = new JsonObject { ["fingerprint"] = _fingerprint, ["choices"] = choices };
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_path!)!);
            string temp = _path + "." + Environment.ProcessId + ".tmp";
            File.WriteAllText(temp, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(temp, _path!, overwrite: true);
            _writeFailure = null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _writeFailure = e.Message;   // kept in memory; the start-up log says so
        }
    }

    /// <summary>A dtype's short name in keys.</summary>
    public static string Name(TorchSharp.torch.ScalarType dtype) => dtype switch
    {
        TorchSharp.torch.ScalarType.Float32 => "f32",
        TorchSharp.torch.ScalarType.BFloat16 => "bf16",
        _ => dtype.ToString().ToLowerInvariant(),
    };

    /// <summary>For the start-up log: where decisions are kept and how many came from the file.</summary>
    public static string Describe() => _path is null
        ? "timed by this process, not kept"
        : $"kept in {_path}; {_recalled} uses read from it, {Known.Count} decisions in all" + (_writeFailure is null ? "" : $"; writing it failed: {_writeFailure}");
}
