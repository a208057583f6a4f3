using System.Globalization;
using System.Text;
using RecurrentGemma.Cli.Bench;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Commands;

/// <summary>
/// <c>rgemma bench</c>: model benchmarks on random weights in real shapes. Prints a markdown
/// report and (with --out) writes it into that file between this benchmark's markers, leaving
/// the other sections of docs/benchmarks.md alone.
/// </summary>
public static class BenchCommand
{
    /// <summary>A small shape that runs in seconds (hidden 1024, 12 layers, vocab 32000: the peer table's).</summary>
    public static readonly GriffinConfig Small = new()
    {
        VocabSize = 32000, HiddenSize = 1024, IntermediateSize = 6144, NumHiddenLayers = 12,
        NumAttentionHeads = 8, HeadDimOverride = 128, LruWidthOverride = 1024,
    };

    public static Task<int> RunAsync(CliArgs args, TextWriter stdout, TextWriter stderr, CancellationToken cancel)
    {
        var suite = args.Get("suite") ?? "model";
        if (suite == "tokenizer")
        {
            var tokenizer = args.Get("tokenizer") ?? "tests/fixtures/gemma-tokenizer/tokenizer.model";
            var corpus = args.Get("corpus") ?? "tests/fixtures/gemma-tokenizer/cases.jsonl";
            var output = args.Get("out");
            args.EnsureAllRead();
            var text = TokenizerBenchmark.Run(tokenizer, corpus, stderr);
            stdout.WriteLine(text);
            if (output is not null) WriteSection(output, "tokenizer", text);
            return Task.FromResult(0);
        }
        if (suite == "grammar")
        {
            var tokenizer = args.Get("tokenizer") ?? "tests/fixtures/gemma-tokenizer/tokenizer.model";
            int steps = args.Int("steps", 400);
            var output = args.Get("out");
            args.EnsureAllRead();
            var text = GrammarBenchmark.Run(tokenizer, steps, stderr);
            stdout.WriteLine(text);
            if (output is not null) WriteSection(output, "grammar", text);
            return Task.FromResult(0);
        }
        if (suite == "tiers")
        {
            int repeats = args.Int("repeats", 5);
            var output = args.Get("out");
            args.EnsureAllRead();
            var text = TierBenchmark.Run(repeats, stderr);
            stdout.WriteLine(text);
            if (output is not null) WriteSection(output, "tiers", text);
            return Task.FromResult(0);
        }
        if (suite == "sampler")
        {
            int repeats = args.Int("repeats", 5);
            var output = args.Get("out");
            args.EnsureAllRead();
            var sb = new StringBuilder();
            sb.AppendLine("## Sampler (issue #9): one batched pass over 256k-id logits");
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite sampler --repeats {repeats} --out docs/benchmarks.md`  ");
            sb.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Environment.ProcessorCount} cores ({CpuFeatures.ModelName}), {DateTime.UtcNow:yyyy-MM-dd}, torch threads {get_num_threads()}, malloc: {MemoryTuning.Describe()}, OpenMP {OpenMpTuning.Describe()}.");
            sb.AppendLine();
            sb.AppendLine(new SamplerBenchmark(repeats, stderr).Run());
            stdout.WriteLine(sb);
            if (output is not null) WriteSection(output, "sampler", sb.ToString());
            return Task.FromResult(0);
        }
        if (suite == "burst")
        {
            var shape = args.Get("shape") ?? "2b";
            var dtype = TorchDevices.ParseDType(args.Get("dtype") ?? "bf16");
            int requests = args.Int("requests", 16), repeats = args.Int("repeats", 3);
            var output = args.Get("out");
            args.EnsureAllRead();
            var (name, config) = shape switch
            {
                "small" => ("small", Small),
                "2b" => ("2b", GriffinConfig.RecurrentGemma2B),
                _ => throw new UsageException($"--shape must be small or 2b, got '{shape}'"),
            };
            var sb = new StringBuilder();
            sb.AppendLine("## Seeded bursts (issue #9): what a seed costs when many requests arrive at once");
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite burst --shape {shape} --dtype {(dtype == ScalarType.BFloat16 ? "bf16" : "f32")} --requests {requests} --repeats {repeats} --out docs/benchmarks.md`  ");
            sb.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Environment.ProcessorCount} cores ({CpuFeatures.ModelName}), {DateTime.UtcNow:yyyy-MM-dd}, batch invariance {RecurrentGemma.Model.Modules.BatchInvariance.Describe()}; random weights; times are wall-clock through the engine's request API.");
            sb.AppendLine();
            sb.AppendLine(new BurstBenchmark(name, config, dtype, requests, repeats, stderr).Run());
            stdout.WriteLine(sb);
            if (output is not null) WriteSection(output, "burst", sb.ToString());
            return Task.FromResult(0);
        }
        if (suite == "engine") return RunEngine(args, stdout, stderr);
        if (suite == "step") return RunStep(args, stdout, stderr);
        if (suite == "profile") return RunProfile(args, stdout, stderr);
        if (suite != "model") throw new UsageException($"--suite must be model, tokenizer, grammar, tiers, engine, burst, step, profile or sampler, got '{suite}'");

        var shapes = (args.Get("shape") ?? "all") switch
        {
            "tiny" or "small" => new[] { ("small", Small) },
            "2b" => [("2b", GriffinConfig.RecurrentGemma2B)],
            "all" => [("small", Small), ("2b", GriffinConfig.RecurrentGemma2B)],
            var s => throw new UsageException($"--shape must be tiny, 2b or all, got '{s}'"),
        };
        var dtypes = (args.Get("dtype") ?? "all") switch
        {
            "all" => new[] { ScalarType.Float32, ScalarType.BFloat16 },
            var d => [TorchDevices.ParseDType(d)],
        };
        bool quick = args.Flag("quick");
        var outPath = args.Get("out");
        var threads = args.Int("threads", 0);
        var split = args.Get("split-gemv");   // on | off: measure the multi-threaded small-batch f32 matmul
        if (split is "on" or "off") RecurrentGemma.Model.Modules.SplitGemv.Enabled = split == "on";
        else if (split is not null) throw new UsageException($"--split-gemv must be on or off, got '{split}'");
        var scan = args.Get("scan");   // auto | fused | parallel | sequential: the RG-LRU prefill path
        if (scan is not null)
            RecurrentGemma.Model.Modules.RgLru.Scan = scan switch
            {
                "auto" => RecurrentGemma.Model.Modules.RgLruScanPath.Auto,
                "fused" => RecurrentGemma.Model.Modules.RgLruScanPath.Fused,
                "parallel" => RecurrentGemma.Model.Modules.RgLruScanPath.Parallel,
                "sequential" => RecurrentGemma.Model.Modules.RgLruScanPath.Sequential,
                _ => throw new UsageException($"--scan must be auto, fused, parallel or sequential, got '{scan}'"),
            };
        var upcast = args.Get("bf16-upcast");   // auto | on | off: measure the bf16-on-CPU strategy
        if (upcast is "on" or "off") RecurrentGemma.Model.Modules.Linear.UpcastBf16OnCpu = upcast == "on";
        else if (upcast is not (null or "auto")) throw new UsageException($"--bf16-upcast must be auto, on or off, got '{upcast}'");
        ReadSimdGemv(args);
        args.EnsureAllRead();
        if (threads > 0) set_num_threads(threads);

        var results = new List<ModelBenchResult>();
        foreach (var (name, config) in shapes)
            foreach (var dtype in dtypes)
            {
                cancel.ThrowIfCancellationRequested();
                results.Add(new ModelBenchmark(name, config, dtype, quick, stderr).Run());
            }

        var report = Report(results, "rgemma bench " + string.Join(' ', Environment.GetCommandLineArgs().Skip(2)));
        stdout.WriteLine(report);
        if (outPath is not null) WriteSection(outPath, "model", report);
        return Task.FromResult(0);
    }

    static Task<int> RunEngine(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var shape = args.Get("shape") ?? "all";
        var dtype = TorchDevices.ParseDType(args.Get("dtype") ?? "bf16");
        bool quick = args.Flag("quick");
        var output = args.Get("out");
        int? repeats = args.Get("repeats") is null ? null : args.Int("repeats", 3);
        // --device: the engine on another device (the GPU check's bundle runs it on CUDA);
        // --section: where its report goes, so that such a run does not replace the CPU's.
        var deviceName = args.Get("device") ?? "cpu";
        var section = args.Get("section") ?? "engine";
        // --levels: the concurrent sequences measured (default 1,4,16,32; a GPU's go wider).
        var levelIds = args.Ids("levels");
        if (levelIds is not null && (levelIds.Length == 0 || levelIds.Any(l => l < 1 || l > 1024)))
            throw new UsageException("--levels must be comma-separated sequence counts from 1 to 1024");
        int[]? levels = levelIds?.Select(l => (int)l).ToArray();
        var simdArg = ReadSimdGemv(args);
        args.EnsureAllRead();
        var device = TorchDevices.Resolve(deviceName);
        var sb = new StringBuilder();
        sb.AppendLine("## Engine (issue #4): continuous batching, scheduler overhead, session reuse" + (device.type == TorchSharp.DeviceType.CPU ? "" : $" — on {device}"));
        sb.AppendLine();
        sb.AppendLine($"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite engine --shape {shape} --dtype {(dtype == ScalarType.BFloat16 ? "bf16" : "f32")}{(quick ? " --quick" : "")}{(repeats is null ? "" : $" --repeats {repeats}")}{(deviceName != "cpu" ? $" --device {deviceName}" : "")}{(levels is null ? "" : $" --levels {string.Join(',', levels)}")}{(section != "engine" ? $" --section {section}" : "")}{simdArg} --out docs/benchmarks.md`  ");
        sb.AppendLine($"Machine: {Environment.ProcessorCount} cores ({CpuFeatures.ModelName}), {DateTime.UtcNow:yyyy-MM-dd}, device {device}, batch invariance {RecurrentGemma.Model.Modules.BatchInvariance.Describe()}; random weights; greedy sampling; times are wall-clock through the engine's request API.");
        sb.AppendLine();
        foreach (var (name, config) in shape switch { "tiny" or "small" => new[] { ("small", Small) }, "2b" => [("2b", GriffinConfig.RecurrentGemma2B)], _ => [("small", Small), ("2b", GriffinConfig.RecurrentGemma2B)] })
        {
            sb.AppendLine(new EngineBenchmark(name, config, dtype, quick, stderr, repeats, device, levels).Run());
        }
        stdout.WriteLine(sb);
        if (output is not null) WriteSection(output, section, sb.ToString());
        return Task.FromResult(0);
    }

    /// <summary>--simd-gemv auto | on | off | avx2: the small-batch SIMD projections (auto and avx2 are timed against libtorch per dtype and rows); --bf16-dot, --f32-row-by-row, --f32-gemm and --bf16-gemm as below.</summary>
    static string ReadSimdGemv(CliArgs args)
    {
        var simd = args.Get("simd-gemv");
        if (simd is "on" or "off")
        {
            RecurrentGemma.Model.Modules.SimdGemv.Enabled = simd == "on";
            RecurrentGemma.Model.Modules.SimdGemv.Forced = simd == "on";
        }
        else if (simd == "avx2") RecurrentGemma.Model.Modules.SimdGemv.Avx2Only = true;   // the AVX2-only machines' path, timed like auto
        else if (simd is not (null or "auto")) throw new UsageException($"--simd-gemv must be auto, on, off or avx2, got '{simd}'");
        // --bf16-dot: bf16 projections of 1–4 rows through the CPU's bf16 dot-product kernel (auto: timed against the C# loops).
        RecurrentGemma.Model.Modules.SimdGemv.Bf16Dot = AutoOnOff(args, "bf16-dot", out var dot);
        // --f32-row-by-row: one-row f32 projections one weight row at a time (auto: timed against four rows per pass).
        RecurrentGemma.Model.Modules.SimdGemv.F32RowByRow = AutoOnOff(args, "f32-row-by-row", out var rowByRow);
        // --f32-gemm: f32 projections of 17+ rows through the model's own GEMM (auto: timed against the other paths).
        var gemm = AutoOnOff(args, "f32-gemm", out var gemmGiven);
        RecurrentGemma.Model.Modules.F32Gemm.Enabled = gemm != false;
        RecurrentGemma.Model.Modules.F32Gemm.Forced = gemm == true;
        // --bf16-gemm: bf16 projections of 17+ rows through the model's own GEMM on the CPU's bf16 dot product (auto: timed against the other paths).
        var bgemm = AutoOnOff(args, "bf16-gemm", out var bgemmGiven);
        RecurrentGemma.Model.Modules.Bf16Gemm.Enabled = bgemm != false;
        RecurrentGemma.Model.Modules.Bf16Gemm.Forced = bgemm == true;
        var invariant = ReadBatchInvariant(args);
        return (simd is null ? "" : $" --simd-gemv {simd}") + (dot is null ? "" : $" --bf16-dot {dot}")
            + (rowByRow is null ? "" : $" --f32-row-by-row {rowByRow}") + (gemmGiven is null ? "" : $" --f32-gemm {gemmGiven}")
            + (bgemmGiven is null ? "" : $" --bf16-gemm {bgemmGiven}") + invariant;
    }

    /// <summary>--batch-invariant on | off (default on, as the server): BatchInvariance's kernels, or each bucket's fastest.</summary>
    static string ReadBatchInvariant(CliArgs args)
    {
        var given = args.Get("batch-invariant");
        if (given is not (null or "on" or "off")) throw new UsageException($"--batch-invariant must be on or off, got '{given}'");
        RecurrentGemma.Model.Modules.BatchInvariance.Enabled = given != "off";
        return given is null ? "" : $" --batch-invariant {given}";
    }

    /// <summary>--name auto | on | off as null / true / false (absent: null); <paramref name="given"/> is what was written.</summary>
    static bool? AutoOnOff(CliArgs args, string name, out string? given)
    {
        given = args.Get(name);
        return given switch
        {
            null or "auto" => null,
            "on" => true,
            "off" => false,
            _ => throw new UsageException($"--{name} must be auto, on or off, got '{given}'"),
        };
    }

    static string SimdGemvSummary() => RecurrentGemma.Model.Modules.SimdGemv.Describe(decide: true);

    static string Bf16Summary() => RecurrentGemma.Model.Modules.Linear.UpcastBf16OnCpu is { } pinned
        ? $"bf16 up-cast pinned {(pinned ? "on" : "off")}"
        : RecurrentGemma.Model.Modules.Bf16Upcast.Describe();

    static Task<int> RunProfile(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var dtypes = (args.Get("dtype") ?? "all") switch { "all" => new[] { ScalarType.BFloat16, ScalarType.Float32 }, var d => [TorchDevices.ParseDType(d)] };
        int steps = args.Int("steps", 9);
        var simdArg = ReadSimdGemv(args);
        var output = args.Get("out");
        args.EnsureAllRead();
        var sb = new StringBuilder();
        sb.AppendLine("## Where a 2B batch-1 decode step goes (issue #9)");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite profile --steps {steps}{(dtypes.Length == 1 ? $" --dtype {(dtypes[0] == ScalarType.BFloat16 ? "bf16" : "f32")}" : "")}{simdArg} --out docs/benchmarks.md`  ");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Environment.ProcessorCount} cores ({CpuFeatures.ModelName}), {DateTime.UtcNow:yyyy-MM-dd}, torch threads {get_num_threads()}, malloc: {MemoryTuning.Describe()}, OpenMP {OpenMpTuning.Describe()}, {SimdGemvSummary()}, batch invariance {RecurrentGemma.Model.Modules.BatchInvariance.Describe()}; random weights. Floor = the part's weight bytes ÷ the copy bandwidth (read + write) measured just before each step; the table's floor column uses the median of those.");
        sb.AppendLine();
        foreach (var dtype in dtypes) sb.AppendLine(new DecodeProfile("2b", GriffinConfig.RecurrentGemma2B, dtype, steps, stderr).Run());
        stdout.WriteLine(sb);
        if (output is not null) WriteSection(output, "profile", sb.ToString());
        return Task.FromResult(0);
    }

    static Task<int> RunStep(CliArgs args, TextWriter stdout, TextWriter stderr)
    {
        var fixture = args.Get("model") ?? "tests/fixtures/griffin/tiny";
        var deviceName = args.Get("device") ?? "cpu";
        int repeats = args.Int("repeats", 7);
        var output = args.Get("out");
        var section = args.Get("section") ?? "step";
        var invariant = ReadBatchInvariant(args);
        // --sequences: the engine step's batches (default 1,8; a GPU's overhead shows at 64–256).
        var seqIds = args.Ids("sequences");
        if (seqIds is not null && (seqIds.Length == 0 || seqIds.Any(b => b < 1 || b > 1024)))
            throw new UsageException("--sequences must be comma-separated batch sizes from 1 to 1024");
        int[]? sequences = seqIds?.Select(b => (int)b).ToArray();
        bool parts = args.Flag("parts");   // the 2B forward per part on the CPU too (always on a GPU)
        args.EnsureAllRead();
        var device = TorchDevices.Resolve(deviceName);
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- bench --suite step --device {deviceName} --repeats {repeats}{(sequences is null ? "" : $" --sequences {string.Join(',', sequences)}")}{(parts ? " --parts" : "")}{(section != "step" ? $" --section {section}" : "")}{invariant} --out docs/benchmarks.md`  ");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Environment.ProcessorCount} cores ({CpuFeatures.ModelName}), {DateTime.UtcNow:yyyy-MM-dd}, torch threads {get_num_threads()}, malloc: {MemoryTuning.Describe()}, OpenMP {OpenMpTuning.Describe()}, batch invariance {RecurrentGemma.Model.Modules.BatchInvariance.Describe()}.");
        sb.AppendLine();
        sb.AppendLine(new StepBenchmark(fixture, device, repeats, stderr, sequences, parts).Run());
        stdout.WriteLine(sb);
        if (output is not null) WriteSection(output, section, sb.ToString());
        return Task.FromResult(0);
    }

    static string Report(IReadOnlyList<ModelBenchResult> rs, string command)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine("## Model (issue #2): load, prefill, decode, state");
        sb.AppendLine();
        sb.AppendLine(ci, $"Command: `dotnet run -c Release --project src/RecurrentGemma.Cli -- {command.Replace("rgemma ", "")}`  ");
        var touch = ProcessStats.TouchCost();
        sb.AppendLine(ci, $"Machine: {Environment.ProcessorCount} cores ({CpuFeatures.ModelName}), {DateTime.UtcNow:yyyy-MM-dd}, torch threads {get_num_threads()}, AVX512_BF16 listed {CpuFeatures.HasNativeBf16}, {Bf16Summary()}, split f32 GEMV {RecurrentGemma.Model.Modules.SplitGemv.Enabled}, {SimdGemvSummary()}, {RecurrentGemma.Model.Modules.F32Gemm.Describe(decide: true)}, {RecurrentGemma.Model.Modules.Bf16Gemm.Describe(decide: true)}, malloc: {MemoryTuning.Describe()}, OpenMP {OpenMpTuning.Describe()}, batch invariance {RecurrentGemma.Model.Modules.BatchInvariance.Describe()}, first touch of memory {touch.Fresh:F2} s/GiB (reused {touch.Reused:F2} s/GiB); random weights (no download).");
        sb.AppendLine();
        sb.AppendLine("Figures are medians with (min–max) over the repeats given in the columns; tok/s = tokens ÷ step time.");
        sb.AppendLine();
        sb.AppendLine("| shape | dtype | weights | state/seq | read (cached) / into fresh memory | load | load ÷ read (cached / fresh) | prefill tok/s (T, repeats) | decode b1 ms/step (repeats) | decode tok/s b1 / b4 / b16 / b64 | step ms @pos short / long (per-round ratio) | b1 step vs memory floor: median step ÷ floor of the 1 GiB copy; per step ÷ floor of its moment | page faults: per prefill token / per b1 step | b1 step: C heap held at most / managed allocated | RSS after load / peak while loading / peak while serving (its margin over weights + 64 states) |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rs)
        {
            string dec = string.Join(" / ", r.Decode.Select(d => (d.Batch * 1000 / d.StepMs.Median).ToString("F2", ci)));
            var b1 = r.Decode[0].StepMs;
            sb.AppendLine(ci, $"| {r.Shape} | {r.DType} | {r.ParameterBytes / 1e9:F2} GB | {r.StateBytesPerSequence / 1048576.0:F2} MiB | {r.RawReadSeconds:F2} s / {r.FreshReadSeconds:F2} s | {r.LoadSeconds:F2} s | {r.LoadRatio:F2}× / {r.LoadRatioFresh:F2}× | {r.PrefillTokensPerSecond.Format("F1")} ({r.PrefillTokens}, {r.PrefillTokensPerSecond.Count}) | {b1.Format("F1")} ({b1.Count}) | {dec} | {r.StepMsAtShortContext:F1} @{r.ShortPosition} / {r.StepMsAtLongContext:F1} @{r.LongPosition} ({r.Flatness.Format("F3")}) | {b1.Median:F0} ms vs {r.MemoryFloorMs:F0} ms ({r.FloorRatio:F2}×, copy {r.CopyBandwidthGBs:F1} GB/s); per step {r.FloorRatioPerStep.Format("F2")}× (copy {r.StepBandwidthGBs.Format("F1")} GB/s) | {r.PrefillFaultsPerToken:F1} / {r.DecodeFaultsPerStep:F1} | {ForwardAllocations.Format(r.DecodeAllocated)} | {r.RssAfterLoad / 1e9:F1} / {r.LoadPeakRss / 1e9:F1} / {r.PeakRss / 1e9:F1} GB ({r.ServingMargin / 1e9:+0.00;-0.00} GB) |");
        }
        sb.AppendLine();
        foreach (var r in rs)
            sb.AppendLine(ci, $"- {r.Shape} {r.DType}: prefill {r.PrefillTokensPerSecond.Median:F1} tok/s is {r.PrefillTokensPerSecond.Median / r.PrefillCeiling * 100:F0} % of the ceiling this machine's GEMM allows ({r.GemmGflops:F0} GFLOP/s on [T, D]·[D, 3D] → {r.PrefillCeiling:F1} tok/s); decode threads: {r.DecodeThreads}.");
        return sb.ToString();
    }

    /// <summary>Replaces (or appends) the text between this section's markers in a markdown file.</summary>
    public static void WriteSection(string path, string section, string body)
    {
        string begin = $"<!-- bench:{section}:begin -->", end = $"<!-- bench:{section}:end -->";
        var text = File.Exists(path) ? File.ReadAllText(path) : "# Benchmarks\n\nEvery number here was produced by the command printed above its table.\n";
        var block = $"{begin}\n{body.TrimEnd()}\n{end}";
        int i = text.IndexOf(begin, StringComparison.Ordinal), j = text.IndexOf(end, StringComparison.Ordinal);
        text = i >= 0 && j > i ? text[..i] + block + text[(j + end.Length)..] : text.TrimEnd() + "\n\n" + block + "\n";
        File.WriteAllText(path, text);
    }
}
