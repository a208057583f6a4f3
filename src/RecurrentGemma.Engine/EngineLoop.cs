using System.Diagnostics;
using System.Threading.Channels;
using RecurrentGemma.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// The one thread that owns every tensor. Each iteration:
///   1. apply commands (new requests, aborts, "stop now");
///   2. admit waiting requests by priority, then first come, first served (continuing a parked state when one fits);
///   3. one batched decode step for every decoding sequence;
///   4. prefill chunks within the step's token budget; a finished prompt samples its first token
///      (and is snapshotted, and forked for n &gt; 1);
///   5. publish events; finished sequences park or free their slots.
/// Everything else talks to it through <see cref="EngineClient"/> and channels.
/// </summary>
internal sealed partial class EngineLoop
{
    readonly GriffinForCausalLM _model;
    readonly EngineOptions _options;
    readonly Channel<Command> _commands = Channel.CreateUnbounded<Command>(new UnboundedChannelOptions { SingleReader = true });
    readonly WaitingQueue _waiting = new();
    readonly List<ActiveRequest> _active = [];   // admitted, in admission order
    readonly Thread _thread;
    readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    StateStore? _store;
    StepExecutor? _executor;
    long _step;
    double _busySeconds;   // cumulative, for the overhead benchmark
    double _recentStepSeconds;   // a moving average of working steps (the playground's engine panel)

    /// <summary>Called for every row the step prepares or post-processes (tests inject faults here).</summary>
    internal Action<GenerationRequest>? RowHook { get; set; }

    internal abstract record Command;
    internal sealed record Submit(ActiveRequest Request) : Command;
    internal sealed record Abort(long RequestId) : Command;
    internal sealed record StopChoice(long RequestId, int Index) : Command;
    internal sealed record DropSession(string SessionId, string? Owner, TaskCompletionSource<int> Done) : Command;

    public EngineMetrics Metrics { get; }
    /// <summary>How the slot count was chosen (logged at start-up).</summary>
    public string SlotSizing { get; private set; } = "";
    /// <summary>How many threads decode steps use, and the measurement behind it.</summary>
    public string ThreadChoice => _executor?.ThreadChoice ?? "";
    public EngineSnapshot Snapshot { get; private set; } = EngineSnapshot.Empty;

    public EngineLoop(GriffinForCausalLM model, EngineOptions options, EngineMetrics metrics)
    {
        _model = model;
        _options = options.ForDevice(model.Device.type);
        Metrics = metrics;
        IStateBackend? backend = options.StoreRedis is { Length: > 0 } redis ? new RedisStateBackend(redis)
            : options.StorePath is { Length: > 0 } path ? new FileStateBackend(path) : null;
        if (backend is not null)
            Disk = new PersistentTier(backend, options.StateFingerprint, GriffinState.SlotLayout(model.Config, model.DType), options.StateTimeToLive, options.MaxStoredStates, options.StoreEncryptionKey);
        _thread = new Thread(Run) { IsBackground = true, Name = "rgemma-engine" };
        _thread.Start();
    }

    /// <summary>The persistent tier, when Sessions:Path is set (thread-safe; read by submitters too).</summary>
    public PersistentTier? Disk { get; }

    public Task Ready => _ready.Task;
    public Task Exited => _exited.Task;

    public bool Post(Command command) => _commands.Writer.TryWrite(command);

    public void Stop() => _commands.Writer.TryComplete();

    void Run()
    {
        try
        {
            var (slots, reason) = _options.ResolveSlots(GriffinState.BytesPerSequence(_model.Config, _model.DType), DeviceMemory.Query(_model.Device));
            SlotSizing = reason;
            _executor = new StepExecutor(_model);
            // Calibrated before the slot pool exists, its scratch state and the kernels' first
            // timings then handed back to the system: the start-up peak is the larger of the
            // calibration and the pool rather than their sum (docs/benchmarks.md). Without the
            // hand-back, the heap (tuned to keep what it frees) held the scratch's pieces, which
            // the pool could not always reuse: 3 of 5 bf16 starts kept 0.54 GB more for good.
            if (_options.CalibrateThreads)
            {
                _executor.Calibrate(maxBatch: slots);
                MemoryTuning.ReleaseFreeMemory();
            }
            // The kernels' few-row choices too (once per process; their timings hand their buffers
            // back themselves), rather than in the first short prompt a server meets.
            _model.TimeRowExactChoices();
            _store = new StateStore(_model, slots, _options.ParkedCapFor(slots), (long)_options.HostMemoryMiB * 1024 * 1024, Disk);
            Publish();
            _ready.TrySetResult();
            while (true)
            {
                if (_waiting.Count == 0 && _active.Count == 0)
                {
                    // Idle: block this (dedicated) thread until a command arrives or we are stopped.
                    if (!_commands.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult()) break;
                }
                if (!DrainCommands()) break;
                try { Step(); }
                catch (Exception e)
                {
                    // A bug or a device error in one step fails the requests in flight, not the
                    // engine: their slots are freed (and reset before any reuse), the loop goes on.
                    foreach (var r in _active.ToList()) Fail(r, $"the engine step failed: {e.Message}");
                }
                Publish();
            }
        }
        catch (Exception e)
        {
            _ready.TrySetException(e);
            foreach (var r in _waiting.Concat(_active)) Fail(r, $"engine failure: {e.Message}");
        }
        finally
        {
            _commands.Writer.TryComplete();   // later submissions fail fast (EngineStoppedException)
            while (_commands.Reader.TryRead(out var left))
                if (left is DropSession d) d.Done.TrySetResult(0);   // the shutdown writes nothing of it below
            
            foreach (var r in _waiting.Concat(_active).ToList()) CancelRequest(r);
            _waiting.Clear();
            _active.Clear();
            _store?.Dispose();
            _executor?.Dispose();
            Publish();
            _exited.TrySetResult();
        }
    }

    /// <summary>Step 1. Returns false once the engine is stopped.</summary>
    bool DrainCommands()
    {
        while (_commands.Reader.TryRead(out var command))
        {
            switch (command)
            {
                case Submit s:
                    _waiting.Enqueue(s.Request);
                    if (s.Request.AbortRequested) CancelRequest(s.Request);   // left while its state was restoring
                    break;
                case DropSession d:
                    int dropped = _store!.DropSession(d.SessionId, d.Owner);
                    Publish();   // before the caller's task completes: it then sees the session gone
                    // Queued behind any write of this session still pending, so none outlives the delete.
                    if (Disk is { } disk) disk.DeleteSession(d.SessionId, d.Owner, d.Done, dropped);
                    else d.Done.TrySetResult(dropped);
                    break;
                case Abort a:
                    if (Find(a.RequestId) is { } r) CancelRequest(r);
                    break;
                case StopChoice sc:
                    if (Find(sc.RequestId) is { } req && sc.Index >= 0 && sc.Index < req.Choices.Length)
                    {
                        var seq = req.Choices[sc.Index];
                        if (seq.Phase == SequencePhase.Decoding) Finish(seq, FinishReason.Stop);
                        else seq.StopRequested = true;
                    }
                    break;
            }
        }
        return !_commands.Reader.Completion.IsCompleted;
    }

    ActiveRequest? Find(long id) => _active.FirstOrDefault(r => r.Id == id) ?? _waiting.FirstOrDefault(r => r.Id == id);

    void Step()
    {
        using var scope = NewDisposeScope();
        var clock = Stopwatch.StartNew();
        Admit();
        int decoded = DecodeStep();
        int prefilled = PrefillStep();
        _step++;
        _busySeconds += clock.Elapsed.TotalSeconds;
        if (decoded + prefilled > 0)
        {
            Metrics.RecordStep(clock.Elapsed.TotalSeconds, decoded, prefilled);
            _recentStepSeconds = _recentStepSeconds == 0 ? clock.Elapsed.TotalSeconds : 0.8 * _recentStepSeconds + 0.2 * clock.Elapsed.TotalSeconds;
        }
    }

    /// <summary>Step 2: by priority, then first come, first served (<see cref="WaitingQueue"/>); the
    /// queue head waits rather than being overtaken.</summary>
    void Admit()
    {
        var store = _store!;
        while (_waiting.Count > 0)
        {
            var r = _waiting.Peek();
            var req = r.Request;
            int running = _active.Sum(a => a.Choices.Count(c => c.Phase != SequencePhase.Finished));
            if (r.Restored is { } restored) { r.Restored = null; store.Adopt(restored); }   // read from disk before it was queued
            // A continuation of a stored response copies its parent's state (the parent stays parked).
            bool copy = req.ParentSessionId is not null;
            // A scored prompt needs every position's logits: it never starts from a parked state.
            var reuse = _options.ParkFinishedStates && req.PromptLogprobs is null ? store.FindMatch(req.PromptTokens, req.ParentSessionId ?? req.SessionId, req.Owner) : null;
            if (!Scheduler.CanAdmit(req.N, running, _options.RunningLimit, store.Obtainable, reuse is { OnDevice: true } && !copy))
                return;
            _waiting.Dequeue();
            var main = r.Choices[0];
            if (reuse is not null)
            {
                var clock = Stopwatch.StartNew();
                main.Slot = copy ? store.TakeCopy(reuse) : store.Take(reuse);
                if (!reuse.OnDevice) Metrics.StateRestored("host", clock.Elapsed.TotalSeconds);
                main.Consumed.AddRange(reuse.Tokens);
                r.CachedTokens = reuse.Tokens.Length;
            }
            else main.Slot = store.TryAcquire()!.Value;
            for (int i = 1; i < r.Choices.Length; i++) r.Choices[i].Slot = store.TryAcquire()!.Value;
            // Unseeded requests get their seed now: from here on their draws are reproducible too.
            foreach (var c in r.Choices) c.Seed = SeededUniform.StreamSeed(req.Sampling.Seed, c.Index);
            main.Phase = SequencePhase.Prefilling;
            r.Admitted = true;
            r.AdmittedAt = DateTimeOffset.UtcNow;
            _active.Add(r);
            Metrics.RequestAdmitted(r.CachedTokens);
        }
    }
}
