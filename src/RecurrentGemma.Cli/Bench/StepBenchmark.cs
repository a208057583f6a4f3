using System.Globalization;
using System.Text;
using RecurrentGemma.Engine;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// The cost of one engine step where compute is negligible and dispatch is everything:
/// torch operations per decode step (per layer type, for the tiny fixture and the 2B shape) and
/// the tiny fixture model's engine decode step time at batch 1 and 8, or the batches given (median
/// and range of repeats; with the step split into forward, sampler and the rest, whose share
/// grows with the rows where the forward is cheap, as on a GPU). An "op" is a tensor handle created on the engine thread — every torch call that
/// returns a tensor, views included — as counted by TorchSharp's dispose-scope statistics;
/// in-place calls that return their receiver are not counted. Each row is taken twice: on the
/// CPU's own paths (kernels and fused passes, what a CPU serves with) and on the tensor ops only
/// (<see cref="RecurrentGemma.Model.Modules.CpuPaths"/> off: the ops a GPU launches, counted here).
/// </summary>
public sealed class StepBenchmark(string fixtureDir, Device device, int repeats, TextWriter progress, int[]? sequences = null, bool parts = false)
{
    public string Run()
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();

        sb.AppendLine("Ops per decode step of the model forward (batch 1, after a 4-token prompt; tensors created, see above):");
        sb.AppendLine();
        sb.AppendLine("| shape | dtype | path | setup + embedding | per recurrent layer | per attention layer | final norm + head | whole forward | per forward: C heap held at most / managed allocated |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|");
        var tinyConfig = GriffinConfig.FromFile(Path.Combine(fixtureDir, "config.json"));
        foreach (var (name, config, dtype) in new[]
                 {
                     ("tiny fixture", tinyConfig, ScalarType.Float32),
                     ("2b", GriffinConfig.RecurrentGemma2B, ScalarType.Float32),
                     ("2b", GriffinConfig.RecurrentGemma2B, ScalarType.BFloat16),
                 })
            foreach (bool cpuPaths in new[] { true, false })
            {
                var c = OnPath(cpuPaths, () => CountForward(config, dtype));
                sb.AppendLine(ci, $"| {name} | {(dtype == ScalarType.BFloat16 ? "bf16" : "f32")} | {PathName(cpuPaths)} | {c.Setup} | {c.PerRecurrent:F0} | {c.PerAttention:F0} | {c.Head} | {c.Total} | {ForwardAllocations.Format(c.Allocated)} |");
                progress.WriteLine($"[bench] ops {name} {PathName(cpuPaths)}: {c.Total} per forward");
            }

        sb.AppendLine();
        sb.AppendLine(ci, $"Engine decode step of the tiny fixture model on {device.type.ToString().ToLowerInvariant()} (f32, temperature 1 with a seed, 300 new tokens per sequence; step time = engine busy time ÷ steps; {repeats} repeats, each on a fresh engine):");
        sb.AppendLine();
        sb.AppendLine("| path | sequences | step ms, median (min–max) | forward / sampler / other ms per step (last repeat) | ops per engine step | host transfers per step | page faults per step | managed bytes per step |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        using var model = CheckpointLoader.Load(fixtureDir, new ModelLoadOptions { Device = device });
        foreach (bool cpuPaths in new[] { true, false })
            foreach (int b in sequences ?? [1, 8])
            {
                var (times, split, ops, transfers, faults, managed) = OnPath(cpuPaths, () => EngineSteps(model, b));
                times.Sort();
                sb.AppendLine(ci, $"| {PathName(cpuPaths)} | {b} | {times[times.Count / 2]:F3} ({times[0]:F3}–{times[^1]:F3}) | {split.Forward:F3} / {split.Sampler:F3} / {split.Other:F3} | {ops:F0} | {transfers} | {faults:F1} | {ForwardAllocations.Bytes(managed)} |");
                progress.WriteLine($"[bench] engine {PathName(cpuPaths)} batch {b}: {times[times.Count / 2]:F3} ms/step");
            }
        // On an asynchronous device the engine's split cannot say where the device's time goes
        // (its "forward" is launch time, the wait ends the sampler's share: DevicePartProfile);
        // the 2B forward per part says. On the CPU (synchronous,
        // and its profile is the model's own: bench --suite profile) only when asked for.
        if (device.type != DeviceType.CPU || parts)
        {
            sb.AppendLine();
            sb.AppendLine(new DevicePartProfile(GriffinConfig.RecurrentGemma2B, ScalarType.BFloat16, device, Math.Max(5, repeats), progress).Run(sequences ?? [1, 8]));
        }
        return sb.ToString();
    }

    static string PathName(bool cpuPaths) => cpuPaths ? "CPU paths" : "tensor ops (a GPU's)";

    /// <summary>Runs <paramref name="measure"/> with the CPU's own paths on or off (off: the ops a GPU
    /// runs; on a GPU both are the same), then puts the switch back.</summary>
    static T OnPath<T>(bool cpuPaths, Func<T> measure)
    {
        var saved = RecurrentGemma.Model.Modules.CpuPaths.Enabled;
        RecurrentGemma.Model.Modules.CpuPaths.Enabled = cpuPaths;
        try { return measure(); }
        finally { RecurrentGemma.Model.Modules.CpuPaths.Enabled = saved; }
    }

    sealed record OpCounts(long Setup, double PerRecurrent, double PerAttention, long Head, long Total, Allocated Allocated);

    static long Created => DisposeScopeManager.Statistics.CreatedInScopeCount + DisposeScopeManager.Statistics.CreatedOutsideScopeCount;

    /// <summary>Counts one batch-1 decode forward layer by layer. Weights are left uninitialised:
    /// the count does not depend on their values, and untouched memory costs nothing.</summary>
    static OpCounts CountForward(GriffinConfig config, ScalarType dtype)
    {
        using var model = new GriffinForCausalLM(config, dtype, CPU);
        model.Prepare();
        using var state = model.CreateState(1);
        using (model.Forward([[2L, 3, 4, 5]], state, [0])) { }
        var marks = new List<(string Name, long At)>();
        model.PartDone = name => marks.Add((name, Created));   // marks only: the pass is the one the engine runs
        long start = Created;
        using (model.Forward([[6L]], state, [0])) { }
        long end = Created;
        model.PartDone = null;
        // What a step allocates, read over the next steps (median of 5: the heap and the managed counter are exact, the median guards against a collection's noise).
        var allocations = Enumerable.Range(0, 5).Select(i => ForwardAllocations.Measure(model, () => { using (model.Forward([[7L + i]], state, [0])) { } })).ToList();
        var allocated = Allocated.Median(allocations);
        long setup = marks[0].At - start;
        var rec = new List<long>();
        var att = new List<long>();
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            long n = marks[l + 1].At - marks[l].At;
            (config.KindOf(l) == BlockKind.Recurrent ? rec : att).Add(n);
        }
        return new OpCounts(setup, rec.Count > 0 ? rec.Average() : 0, att.Count > 0 ? att.Average() : 0, end - marks[config.NumHiddenLayers].At, end - start, allocated);
    }

    /// <summary>Each repeat is a fresh engine (its own thread, calibration and memory), so the
    /// range shows what a restart can change, not only step-to-step noise.</summary>
    (List<double> StepMs, (double Forward, double Sampler, double Other) Split, double OpsPerStep, string TransfersPerStep, double FaultsPerStep, double ManagedPerStep) EngineSteps(GriffinForCausalLM model, int batch)
    {
        double faults = 0, ops = 0, managed = 0;
        (double, double, double) split = default;
        var times = new List<double>();
        string transfers = "n/a";
        for (int r = 0; r < repeats; r++)
        {
            var engine = new EngineClient(model, new EngineOptions { MaxSlots = batch + 1, MaxRunningSequences = batch, MaxQueuedRequests = Math.Max(64, batch), PrefillTokenBudget = Math.Max(512, 4 * batch), ParkFinishedStates = false });
            try
            {
                if (r == 0) progress.WriteLine($"[bench] engine threads: {engine.ThreadChoice}");
                Run(engine, batch, 20, model.Config.VocabSize);   // warm-up
                var before = engine.Snapshot;
                long faultsBefore = ProcessStats.PageFaults();
                long managedBefore = GC.GetTotalAllocatedBytes(precise: true);
                Run(engine, batch, 300, model.Config.VocabSize);
                long managedAfter = GC.GetTotalAllocatedBytes(precise: true);
                var after = engine.Snapshot;
                long steps = after.Steps - before.Steps;
                double busy = (after.BusySeconds - before.BusySeconds) * 1000 / steps;
                times.Add(busy);
                double forward = (after.ForwardSeconds - before.ForwardSeconds) * 1000 / steps, sampler = (after.SamplerSeconds - before.SamplerSeconds) * 1000 / steps;
                split = (forward, sampler, busy - forward - sampler);
                ops = (double)(after.TensorsCreated - before.TensorsCreated) / steps;
                transfers = TransfersText(before, after, steps);
                faults = (double)(ProcessStats.PageFaults() - faultsBefore) / steps;   // the whole process: engine and the readers
                managed = (double)(managedAfter - managedBefore) / steps;              // likewise (the readers' token events included)
            }
            finally { engine.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        }
        return (times, split, ops, transfers, faults, managed);
    }

    static string TransfersText(EngineSnapshot before, EngineSnapshot after, long steps) =>
        string.Create(CultureInfo.InvariantCulture, $"{(after.HostTransfers - before.HostTransfers) / (double)steps:F2}");

    static void Run(EngineClient engine, int batch, int newTokens, int vocab)
    {
        int Id(int i) => 3 + (i - 3) % (vocab - 3);
        var handles = Enumerable.Range(0, batch).Select(i => engine.Submit(new GenerationRequest
        {
            PromptTokens = [2, Id(10 + i), Id(20 + i), 30],   // distinct prompts, inside any fixture's vocabulary
            MaxNewTokens = newTokens,
            Sampling = new SamplingParams { Temperature = 1, Seed = 1000 + i },
        })).ToList();
        Task.WhenAll(handles.Select(async h => { await foreach (var _ in h.ReadEventsAsync()) { } })).GetAwaiter().GetResult();
    }
}
