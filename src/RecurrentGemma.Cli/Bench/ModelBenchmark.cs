using System.Diagnostics;
using RecurrentGemma.Model;
using RecurrentGemma.Model.Checkpoints;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>A repeated measurement: its median and range.</summary>
public sealed record Spread(double Median, double Min, double Max, int Count)
{
    public static Spread Of(IReadOnlyCollection<double> xs)
    {
        var s = xs.Order().ToList();
        double median = s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
        return new Spread(median, s[0], s[^1], s.Count);
    }
    public Spread Map(Func<double, double> f) { double a = f(Min), b = f(Max); return new(f(Median), Math.Min(a, b), Math.Max(a, b), Count); }
    public string Format(string f) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Median.ToString(f, System.Globalization.CultureInfo.InvariantCulture)} ({Min.ToString(f, System.Globalization.CultureInfo.InvariantCulture)}–{Max.ToString(f, System.Globalization.CultureInfo.InvariantCulture)})");
}

/// <summary>What one (shape, dtype) benchmark run measured.</summary>
public sealed record ModelBenchResult(
    string Shape, string DType, long ParameterBytes, long StateBytesPerSequence,
    double RawReadSeconds, double FreshReadSeconds, double LoadSeconds,
    int PrefillTokens, Spread PrefillTokensPerSecond,
    IReadOnlyList<(int Batch, Spread StepMs)> Decode,
    double StepMsAtShortContext, double StepMsAtLongContext, Spread Flatness, long ShortPosition, long LongPosition,
    double CopyBandwidthGBs, double MemoryFloorMs, Spread FloorRatioPerStep, Spread StepBandwidthGBs,
    double PrefillFaultsPerToken, double DecodeFaultsPerStep, Allocated DecodeAllocated, long RssAfterLoad, long LoadPeakRss, long PeakRss, long ServingStateBytes,
    double GemmGflops, double PrefillCeiling, string DecodeThreads)
{
    public double LoadRatio => LoadSeconds / RawReadSeconds;
    /// <summary>What serving held at its peak beyond the weights and the states it used (runtime, activations, heap slack).</summary>
    public long ServingMargin => PeakRss - ParameterBytes - ServingStateBytes;
    public double LoadRatioFresh => LoadSeconds / FreshReadSeconds;
    /// <summary>The median of the per-round ratios (long ÷ short), each round stepping the two positions back to back.</summary>
    public double FlatnessRatio => Flatness.Median;
    /// <summary>The median b1 step against the floor of the 1 GiB copy taken after the decode runs.</summary>
    public double FloorRatio => Decode[0].StepMs.Median / MemoryFloorMs;
}

/// <summary>
/// Measures one model shape in one dtype with random weights (no download): checkpoint load vs
/// raw read of the same bytes, prefill throughput, batched decode throughput, decode step time
/// near the start vs deep into a long context, and batch-1 decode vs the memory-bandwidth floor.
/// </summary>
public sealed class ModelBenchmark(string shapeName, GriffinConfig config, ScalarType dtype, bool quick, TextWriter progress)
{
    const long ShortPosition = 100, LongPosition = 4000;

    public ModelBenchResult Run()
    {
        bool big = config.ParameterCount > 100_000_000;
        string dt = dtype == ScalarType.BFloat16 ? "bf16" : "f32";
        Say($"{shapeName}/{dt}: {config.ParameterCount / 1e6:F1}M parameters, building random weights…");

        // 1. Checkpoint load vs reading the same bytes: write the random model out, drop it, load it.
        var dir = Directory.CreateTempSubdirectory("rgemma-bench-").FullName;
        double rawRead, freshRead, load;
        GriffinForCausalLM model;
        try
        {
            using (var random = new GriffinForCausalLM(config, dtype, CPU))
            {
                RandomWeights.Initialize(random, seed: 1234);
                Say("writing checkpoint…");
                SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), random.NamedTensors());
            }
            File.WriteAllText(Path.Combine(dir, "config.json"), ConfigJson(config));
            MemoryTuning.ReleaseFreeMemory();   // the random model is gone: measure the load from here
            rawRead = Time(() => ReadAllBytes(Path.Combine(dir, "model.safetensors")));     // warms the page cache too
            rawRead = Math.Min(rawRead, Time(() => ReadAllBytes(Path.Combine(dir, "model.safetensors"))));
            freshRead = Time(() => ReadIntoFreshMemory(Path.Combine(dir, "model.safetensors")));
            Say($"raw read {rawRead:F2} s (into fresh memory {freshRead:F2} s); loading…");
            MemoryTuning.ReleaseFreeMemory();   // the fresh-memory read's buffer, kept by the heap, is not the load's
            ProcessStats.ResetPeak();           // the load's own peak, apart from building the random model
            var clock = Stopwatch.StartNew();
            model = CheckpointLoader.Load(dir, new ModelLoadOptions { DType = dtype });
            load = clock.Elapsed.TotalSeconds;
            Say($"load {load:F2} s");
        }
        finally { Directory.Delete(dir, recursive: true); }
        var (rssAfterLoad, loadPeak) = ProcessStats.Memory();
        bool peakReset = ProcessStats.ResetPeak();   // from here the peak is serving's: prefill, decode up to 64 rows

        using (model)
        {
            var rng = new Random(7);
            long[] RandomIds(int n) => Enumerable.Range(0, n).Select(_ => (long)rng.Next(3, config.VocabSize)).ToArray();

            // 2. Prefill throughput (one chunk of T tokens, logits of the last position only).
            int prefillT = quick && big ? 128 : 512;
            int prefillRepeats = quick ? 3 : 5;
            // Warm-up at full size: the first chunk of this size touches its activations' memory for
            // the first time (2B bf16: ~1100 page faults per token, then 0–22), which is start-up, not prefill.
            using (var warm = model.CreateState(1)) using (model.Forward([RandomIds(prefillT)], warm, [0])) { }
            var prefillRates = new List<double>();
            long prefillFaults = 0;
            for (int r = 0; r < prefillRepeats; r++)
            {
                using var state = model.CreateState(1);
                var ids = RandomIds(prefillT);
                long f0 = ProcessStats.PageFaults();
                prefillRates.Add(prefillT / Time(() => { using var _ = model.Forward([ids], state, [0]); }));
                prefillFaults += ProcessStats.PageFaults() - f0;
            }
            var prefill = Spread.Of(prefillRates);
            var (gemm, ceiling) = GemmCeiling(model, prefillT);
            Say($"GEMM {gemm:F0} GFLOP/s → prefill ceiling {ceiling:F1} tok/s");
            Say($"prefill {prefillT} tokens: {prefill.Format("F1")} tok/s, {(double)prefillFaults / prefillRepeats / prefillT:F1} page faults per token");

            // 3. Batched decode: every sequence one token per step, on the torch thread count the
            //    engine would choose for that batch (ThreadCalibration: one thread where it wins).
            int all = RecurrentGemma.Engine.ThreadCalibration.AllThreads;
            int[] batches = [1, 4, 16, 64];
            // The decode runs' state is the pool the calibration times in, as the engine's is.
            using var decodeState = model.CreateState(batches.Max());
            var decodeThreads = RecurrentGemma.Engine.ThreadCalibration.Calibrate(model, decodeState);
            string threadChoice = decodeThreads.Reason;
            Say($"decode threads: {threadChoice}");
            void UseThreads(int batch) => set_num_threads(decodeThreads.For(batch));
            int steps = big ? (quick ? 3 : 7) : (quick ? 10 : 40);
            var decode = new List<(int, Spread)>();
            double decodeFaults = 0;
            var decodeAllocated = new Allocated(-1, 0);
            // Each timed batch-1 step is also held against the floor of its own moment (a 128 MiB
            // copy just before it, as in --suite profile): this VM's bandwidth swings 2× within minutes.
            var floorRatios = new List<double>();
            var stepBandwidths = new List<double>();
            using var probe = new BandwidthProbe();
            // The batch sizes take turns in rounds of a few steps (the first of each untimed: the
            // thread count may have just changed), so a slow phase of a shared machine falls on
            // all of them alike rather than on whichever ran then.
            {
                var state = decodeState;
                var slots = Enumerable.Range(0, batches.Max()).Select(i => (long)i).ToArray();
                using (model.Forward(slots.Select(_ => (IReadOnlyList<long>)RandomIds(8)).ToList(), state, slots)) { }
                var times = batches.ToDictionary(b => b, _ => new List<double>());
                foreach (var b in batches)
                {
                    UseThreads(b);
                    using (model.Forward(Enumerable.Range(0, b).Select(_ => (IReadOnlyList<long>)RandomIds(1)).ToList(), state, slots[..b])) { } // warm-up
                }
                long faults = 0;
                int rounds = quick ? 1 : 3, perRound = (steps + rounds - 1) / rounds;
                for (int r = 0; r < rounds; r++)
                    foreach (var b in batches)
                    {
                        UseThreads(b);
                        for (int s = 0; s <= perRound; s++)
                        {
                            var next = Enumerable.Range(0, b).Select(_ => (IReadOnlyList<long>)RandomIds(1)).ToList();
                            double bw = b == 1 && s > 0 ? probe.Measure() : 0;
                            long f0 = ProcessStats.PageFaults();
                            double ms = Time(() => { using var _ = model.Forward(next, state, slots[..b]); }) * 1000;
                            if (s == 0) continue;
                            times[b].Add(ms);
                            if (b != 1) continue;
                            faults += ProcessStats.PageFaults() - f0;
                            floorRatios.Add(ms / (model.ParameterBytes / bw * 1000));
                            stepBandwidths.Add(bw / 1e9);
                        }
                    }
                // Memory per batch-1 step, read on three more steps outside the timing (the readings walk the heap at every part mark).
                UseThreads(1);
                decodeAllocated = Allocated.Median(Enumerable.Range(0, 3).Select(_ => ForwardAllocations.Measure(model, () =>
                {
                    using var _ = model.Forward([RandomIds(1)], state, slots[..1]);
                })).ToList());
                set_num_threads(all);
                decodeFaults = (double)faults / times[1].Count;
                foreach (var b in batches)
                {
                    var step = Spread.Of(times[b]);
                    decode.Add((b, step));
                    Say($"decode batch {b}: {b * 1000 / step.Median:F2} tok/s ({step.Format("F1")} ms/step)");
                }
            }

            // 4. Step time near the start vs deep into a long context (must be flat: fixed-size state).
            var (shortMs, longMs, flatness) = StepsAt(model, ShortPosition, LongPosition, big, steps, decodeThreads.For(1));
            Say($"decode step at position {ShortPosition}: {shortMs:F2} ms, at {LongPosition}: {longMs:F2} ms, per-round ratio {flatness.Format("F3")}");

            // Serving's peak, read before the 1 GiB copy below (the bench's own); the per-step probe's 256 MiB is in it.
            var (_, peak) = ProcessStats.Memory();
            if (!peakReset) peak = Math.Max(peak, loadPeak);
            long servingStates = batches.Max() * GriffinState.BytesPerSequence(config, dtype);   // the largest state pool (the decode runs')
            Say($"RSS after load {rssAfterLoad / 1e9:F2} GB (load peak {loadPeak / 1e9:F2}); serving peak {peak / 1e9:F2} GB = weights {model.ParameterBytes / 1e9:F2} + states {servingStates / 1e9:F2} + {(peak - model.ParameterBytes - servingStates) / 1e9:F2} GB (the runtime, activations, heap and the bench's 0.27 GB probe)");

            // 5. The memory floor for batch-1 decode: every weight byte read once per token.
            double bandwidth = CopyBandwidth();
            double floorMs = model.ParameterBytes / bandwidth * 1000;
            Say($"copy bandwidth {bandwidth / 1e9:F1} GB/s → floor {floorMs:F1} ms/token");

            return new ModelBenchResult(shapeName, dt, model.ParameterBytes, GriffinState.BytesPerSequence(config, dtype),
                rawRead, freshRead, load, prefillT, prefill, decode, shortMs, longMs, flatness, ShortPosition, LongPosition,
                bandwidth / 1e9, floorMs, Spread.Of(floorRatios), Spread.Of(stepBandwidths),
                (double)prefillFaults / prefillRepeats / prefillT, decodeFaults,
                decodeAllocated, rssAfterLoad, loadPeak, peak, servingStates,
                gemm, ceiling, threadChoice);
        }
    }

    /// <summary>
    /// Batch-1 decode step time (median, ms) of a sequence at each of two positions, the two
    /// sequences stepping in turn so that a slow phase of a shared machine falls on both alike,
    /// and the ratio long ÷ short per round (its median and range: on a VM whose speed swings
    /// within seconds, the ratio of two medians taken over different steps moved by ±20 % where
    /// the per-round ratios did not). Small models really prefill to each position; for big ones
    /// the slot's tensors are filled with random values and its position set directly (the step's
    /// cost depends on the position and the fixed-size state, not on what the state holds), since
    /// prefilling 4000 tokens of a 2B model takes minutes here.
    /// </summary>
    (double Short, double Long, Spread Ratio) StepsAt(GriffinForCausalLM model, long shortPosition, long longPosition, bool big, int steps, int threads)
    {
        long[] positions = [shortPosition, longPosition];
        using var state = model.CreateState(2);
        if (big)
        {
            using var noGrad = no_grad();
            foreach (var t in state.AllTensors()) t.normal_(0, 0.5);
            for (int slot = 0; slot < 2; slot++) state.SetTokenCount(slot, positions[slot]);
        }
        else
        {
            var rng = new Random(3);
            for (int slot = 0; slot < 2; slot++)
                for (long done = 0; done < positions[slot];)
                {
                    int n = (int)Math.Min(512, positions[slot] - done);
                    using (model.Forward([Enumerable.Range(0, n).Select(_ => (long)rng.Next(3, config.VocabSize)).ToArray()], state, [slot])) { }
                    done += n;
                }
        }
        var times = new[] { new List<double>(), new List<double>() };
        int all = get_num_threads();
        set_num_threads(threads);
        for (int s = 0; s < Math.Max(2 * steps, 7) + 1; s++)
            for (int slot = 0; slot < 2; slot++)
            {
                double t = Time(() => { using var _ = model.Forward([new long[] { 5 }], state, [slot]); });
                if (s > 0) times[slot].Add(t);   // the first step of each warms up
            }
        set_num_threads(all);
        var ratios = times[1].Zip(times[0], (l, s) => l / s).ToList();
        return (Spread.Of(times[0]).Median * 1000, Spread.Of(times[1]).Median * 1000, Spread.Of(ratios));
    }

    /// <summary>
    /// The prefill ceiling this machine's matrix multiply allows: libtorch's rate on one [T, D]·[D, 3D]
    /// product in the model's dtype (every thread, median of 5), divided by the 2 FLOPs per weight
    /// per token of every projection (all parameters but the embedding table, which a prefill reads
    /// only for the last position's logits).
    /// </summary>
    static (double Gflops, double TokensPerSecond) GemmCeiling(GriffinForCausalLM model, int tokens)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long d = model.Config.HiddenSize;
        var x = empty(tokens, d, model.DType).fill_(Scalars.Of(0.5));
        // Through the model's own projection path (a bf16 model may up-cast, RecurrentGemma.Model.Modules.Bf16Upcast).
        using var projection = new RecurrentGemma.Model.Modules.Linear(d, 3 * d, false, model.DType, model.Device);
        foreach (var p in projection.parameters()) p.fill_(Scalars.Of(0.01));
        projection.Forward(x).Dispose();
        var times = Enumerable.Range(0, 5).Select(_ => Time(() => projection.Forward(x).Dispose())).Order().ToList();
        double flops = 2.0 * tokens * d * 3 * d / times[2];
        double perToken = 2.0 * (model.Config.ParameterCount - (long)model.Config.VocabSize * d);
        return (flops / 1e9, flops / perToken);
    }

    /// <summary>Copy bandwidth (read + write) over 1 GiB, best of 4.</summary>
    public static double CopyBandwidth()
    {
        using var probe = new BandwidthProbe(1L << 30);
        return probe.Measure(copies: 4);
    }

    static void ReadAllBytes(string path)
    {
        var buffer = new byte[16 << 20];
        using var handle = File.OpenHandle(path);
        long offset = 0;
        int n;
        while ((n = RandomAccess.Read(handle, buffer, offset)) > 0) offset += n;
    }

    /// <summary>The least any loader must do: read the bytes into newly allocated (unzeroed) memory.</summary>
    static unsafe void ReadIntoFreshMemory(string path)
    {
        using var handle = File.OpenHandle(path);
        long length = RandomAccess.GetLength(handle);
        var memory = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)length);
        try
        {
            for (long offset = 0; offset < length;)
            {
                int n = (int)Math.Min(16 << 20, length - offset);
                int got = RandomAccess.Read(handle, new Span<byte>(memory + offset, n), offset);
                if (got <= 0) break;
                offset += got;
            }
        }
        finally { System.Runtime.InteropServices.NativeMemory.Free(memory); }
    }

    static double Time(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalSeconds;
    }

    void Say(string line) => progress.WriteLine($"[bench] {line}");

    static string ConfigJson(GriffinConfig c) => System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["model_type"] = "recurrent_gemma",
        ["vocab_size"] = c.VocabSize, ["hidden_size"] = c.HiddenSize, ["intermediate_size"] = c.IntermediateSize,
        ["num_hidden_layers"] = c.NumHiddenLayers, ["num_attention_heads"] = c.NumAttentionHeads,
        ["num_key_value_heads"] = c.NumKeyValueHeads, ["head_dim"] = c.HeadDim, ["lru_width"] = c.LruWidth,
        ["attention_window_size"] = c.AttentionWindowSize, ["conv1d_width"] = c.Conv1dWidth,
        ["logits_soft_cap"] = c.LogitsSoftCap, ["rms_norm_eps"] = c.RmsNormEps, ["rope_theta"] = c.RopeTheta,
        ["partial_rotary_factor"] = c.PartialRotaryFactor,
        ["block_types"] = c.BlockTypes.Select(k => k == BlockKind.Recurrent ? "recurrent" : "attention").ToArray(),
    });
}
