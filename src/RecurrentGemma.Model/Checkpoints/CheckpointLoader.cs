using System.Diagnostics;
using System.Text.Json;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Checkpoints;

/// <summary>Progress of a checkpoint load, reported after each tensor.</summary>
public sealed record LoadProgress(int TensorsDone, int TensorsTotal, long BytesDone, long BytesTotal, TimeSpan Elapsed)
{
    public double MegabytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesDone / 1e6 / Elapsed.TotalSeconds : 0;
}

/// <summary>How to materialise a checkpoint.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Parameter (and activation) dtype: float32 or bfloat16. Tensors are converted on load.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;
    public Device Device { get; init; } = CPU;
    /// <summary>Weights file inside the directory to use instead of model.safetensors / the shard index.</summary>
    public string? WeightsFile { get; init; }
    public IProgress<LoadProgress>? Progress { get; init; }
}

/// <summary>
/// Loads a Hugging Face snapshot directory (config.json + model.safetensors, or shards listed in
/// model.safetensors.index.json) into a <see cref="GriffinForCausalLM"/>. Strict 1:1 by name:
/// a missing, unexpected or mis-shaped tensor fails the load with a message naming it.
/// </summary>
public static class CheckpointLoader
{
    /// <summary>Tensors an export may carry that the model does not need (the output head is tied).</summary>
    static readonly HashSet<string> Ignorable = ["lm_head.weight"];

    public static GriffinForCausalLM Load(string directory, ModelLoadOptions? options = null)
    {
        options ??= new ModelLoadOptions();
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"model directory not found: {directory}");
        var configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{directory} has no config.json", configPath);
        var config = GriffinConfig.FromFile(configPath);
        var files = WeightFiles(directory, options.WeightsFile);

        var model = new GriffinForCausalLM(config, options.DType, options.Device);
        try
        {
            LoadInto(model, files, options.Progress);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The safetensors files of a snapshot, in shard order.</summary>
    public static IReadOnlyList<string> WeightFiles(string directory, string? explicitFile = null)
    {
        if (explicitFile is not null)
        {
            var p = Path.Combine(directory, explicitFile);
            return File.Exists(p) ? [p] : throw new FileNotFoundException($"weights file not found: {p}", p);
        }
        var index = Path.Combine(directory, "model.safetensors.index.json");
        if (File.Exists(index))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(index));
                var shards = doc.RootElement.GetProperty("weight_map").EnumerateObject()
                    .Select(p => ShardPath(directory, index, p.Name, p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() : null))
                    .Distinct().Order(StringComparer.Ordinal).ToList();
                foreach (var s in shards)
                    if (!File.Exists(s)) throw new FileNotFoundException($"{index} lists {Path.GetFileName(s)}, which is missing", s);
                return shards;
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new InvalidDataException($"{index}: not a valid shard index ({e.Message})", e);
            }
        }
        var single = Path.Combine(directory, "model.safetensors");
        if (File.Exists(single)) return [single];
        throw new FileNotFoundException($"{directory} has neither model.safetensors nor model.safetensors.index.json");
    }

    /// <summary>
    /// The file a weight_map entry names, which must stay inside the snapshot: no absolute path, no
    /// "..", and no symlink whose target leaves it — except into the Hugging Face cache's own
    /// blobs folder (snapshots/&lt;rev&gt;/x → ../../blobs/&lt;hash&gt;), the layout every downloaded
    /// snapshot has. An index that points elsewhere is refused, naming the entry.
    /// </summary>
    internal static string ShardPath(string directory, string index, string entry, string? shard)
    {
        InvalidDataException Refuse(string why) => new($"{index}: weight_map entry '{entry}' {why}");
        if (string.IsNullOrWhiteSpace(shard)) throw Refuse("is not a file name");
        if (Path.IsPathRooted(shard) || shard.Contains('\\') || shard.Contains('\0'))
            throw Refuse($"names '{shard}', which is not a file inside the snapshot directory");
        if (shard.Split('/').Any(part => part is ".." or "." or ""))
            throw Refuse($"names '{shard}', which leaves the snapshot directory");
        var root = Path.GetFullPath(directory);
        var path = Path.GetFullPath(Path.Combine(root, shard));
        if (!Inside(path, root)) throw Refuse($"names '{shard}', which leaves the snapshot directory");
        if (!File.Exists(path)) return path;   // reported as missing by the caller
        var target = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName;
        if (target is not null)
        {
            var realRoot = Directory.ResolveLinkTarget(root, returnFinalTarget: true)?.FullName ?? root;
            var parent = Directory.GetParent(root);
            var blobs = parent?.Name == "snapshots" && parent.Parent is { } repo ? Path.Combine(repo.FullName, "blobs") : null;
            if (!Inside(target, root) && !Inside(target, realRoot) && !(blobs is not null && Inside(target, blobs)))
                throw Refuse($"names '{shard}', a link that leads outside the snapshot directory");
        }
        return path;
    }

    static bool Inside(string path, string root) =>
        path.StartsWith(Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>Fills every parameter of the model from the files; strict by name and shape.</summary>
    public static void LoadInto(GriffinForCausalLM model, IReadOnlyList<string> files, IProgress<LoadProgress>? progress = null)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter, StringComparer.Ordinal);
        var opened = new List<SafeTensorsFile>();
        try
        {
            foreach (var f in files) opened.Add(SafeTensorsFile.Open(f));

            // Check the whole mapping before reading a byte, so errors come fast and complete.
            var problems = new List<string>();
            var plan = new List<(SafeTensorsFile File, SafeTensorEntry Entry, Tensor Target)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var file in opened)
                foreach (var e in file.Entries.Values.OrderBy(e => e.Begin))
                {
                    if (Ignorable.Contains(e.Name)) continue;
                    if (!seen.Add(e.Name)) { problems.Add($"tensor {e.Name} appears in more than one file"); continue; }
                    if (!parameters.TryGetValue(e.Name, out var target)) { problems.Add($"unexpected tensor {e.Name} {e.ShapeText} in {Path.GetFileName(file.Path)}"); continue; }
                    SafeTensorsFile.ToScalarType(file.Path, e); // throws on an unsupported dtype
                    if (!target.shape.SequenceEqual(e.Shape))
                    {
                        problems.Add($"tensor {e.Name} has shape {e.ShapeText} in {Path.GetFileName(file.Path)}, the model expects [{string.Join(", ", target.shape)}]");
                        continue;
                    }
                    plan.Add((file, e, target));
                }
            foreach (var name in parameters.Keys.Where(n => !seen.Contains(n)).Order(StringComparer.Ordinal))
                problems.Add($"missing tensor {name} [{string.Join(", ", parameters[name].shape)}]");
            if (problems.Count > 0)
                throw new InvalidDataException($"checkpoint does not match the model ({problems.Count} problem(s)): "
                    + string.Join("; ", problems.Take(12)) + (problems.Count > 12 ? "; …" : ""));

            foreach (var p in plan) HugePages.Advise(p.Target);
            long totalBytes = plan.Sum(p => p.Entry.End - p.Entry.Begin), doneBytes = 0;
            var clock = Stopwatch.StartNew();
            int done = 0;
            var gate = new object();
            // Tensors are read in parallel: most of a load is the kernel faulting in fresh pages,
            // which scales with cores; the reads themselves are positional and independent.
            Parallel.ForEach(plan.OrderByDescending(p => p.Entry.End - p.Entry.Begin),
                new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) },
                item =>
                {
                    var (file, entry, target) = item;
                    using var noGrad = no_grad();
                    var fileType = SafeTensorsFile.ToScalarType(file.Path, entry);
                    if (fileType == target.dtype && Modules.CpuPaths.On(target) && target.is_contiguous())
                        file.ReadInto(entry, target);                       // straight into the parameter
                    else
                    {
                        using var staging = empty(entry.Shape, fileType, CPU);
                        file.ReadInto(entry, staging);
                        target.copy_(staging);                             // converts dtype / moves device
                    }
                    lock (gate)
                    {
                        doneBytes += entry.End - entry.Begin;
                        progress?.Report(new LoadProgress(++done, plan.Count, doneBytes, totalBytes, clock.Elapsed));
                    }
                });
        }
        finally
        {
            foreach (var f in opened) f.Dispose();
        }
        model.Prepare();
        MemoryTuning.ReleaseFreeMemory();   // staging buffers of converted tensors go back
    }
}
