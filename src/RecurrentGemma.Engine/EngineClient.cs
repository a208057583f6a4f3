using System.Runtime.CompilerServices;
using RecurrentGemma.Model;

namespace RecurrentGemma.Engine;

/// <summary>
/// The engine's front door, safe to call from any thread: <see cref="Submit"/> validates a
/// request, refuses it when the queue is full, and returns a handle whose event stream the
/// caller reads. Disposing the handle (or cancelling its token) before the end aborts the
/// request in the engine at once, freeing its slot.
/// </summary>
public interface IEngineClient
{
    IRequestHandle Submit(GenerationRequest request, CancellationToken cancellationToken = default);
    EngineSnapshot Snapshot { get; }
    /// <summary>Forgets one conversation's parked states in every tier; how many were dropped.</summary>
    Task<int> DropSessionAsync(string sessionId, string? owner);
}

/// <summary>A submitted request as its caller sees it (a seam: the inference layer's tests fake it).</summary>
public interface IRequestHandle : IAsyncDisposable
{
    long Id { get; }
    /// <summary>Events in order, ending with <see cref="UsageEvent"/> (or an <see cref="ErrorEvent"/>).
    /// Leaving the loop early cancels the request.</summary>
    IAsyncEnumerable<EngineEvent> ReadEventsAsync(CancellationToken cancellationToken = default);
    /// <summary>Ends one choice now with finish reason "stop" (the text layer found a stop string).</summary>
    void StopChoice(int index);
    void Cancel();
}

public sealed class EngineClient : IEngineClient, IAsyncDisposable
{
    readonly EngineLoop _loop;
    readonly EngineOptions _options;
    readonly int _vocab;
    long _nextId;
    bool _stopping;

    public EngineClient(GriffinForCausalLM model, EngineOptions options, EngineMetrics? metrics = null)
    {
        _options = options = options.ForDevice(model.Device.type);
        _vocab = model.Config.VocabSize;
        Metrics = metrics ?? new EngineMetrics();
        _loop = new EngineLoop(model, options, Metrics);
        Metrics.Snapshot = () => _loop.Snapshot;
        _loop.Ready.GetAwaiter().GetResult();   // surfaces a bad configuration (e.g. no slot fits) here
    }

    public EngineMetrics Metrics { get; }
    public EngineOptions Options => _options;
    /// <summary>How the state pool was sized (options, device memory or the default).</summary>
    public string SlotSizing => _loop.SlotSizing;
    public string ThreadChoice => _loop.ThreadChoice;

    /// <summary>Called on the engine thread for every row a step prepares or post-processes;
    /// tests throw from it to check that one request's failure stays its own.</summary>
    internal Action<GenerationRequest>? RowHook { set => _loop.RowHook = value; }
    /// <summary>The persistent tier, when configured (tests and metrics).</summary>
    internal PersistentTier? Disk => _loop.Disk;
    /// <summary>Raised with a reason whenever the persistent tier fails (the turn is prefilled instead).</summary>
    public event Action<string>? StoreFailed
    {
        add { if (_loop.Disk is { } d) d.Failed += value; }
        remove { if (_loop.Disk is { } d) d.Failed -= value; }
    }

    /// <summary>Completes when the persistent tier's index has been read (at once without one).
    /// Until then a prompt that extends a stored state is simply prefilled.</summary>
    public Task StoreIndexed => _loop.Disk?.Scanned ?? Task.CompletedTask;
    public EngineSnapshot Snapshot => _loop.Snapshot;

    public RequestHandle Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        if (_stopping) throw new EngineStoppedException();
        Validate(request);
        if (!Metrics.TryEnqueue(_options.MaxQueuedRequests))
            throw new EngineOverloadedException($"the request queue is full ({_options.MaxQueuedRequests} waiting); retry later");
        var active = new ActiveRequest(Interlocked.Increment(ref _nextId), request)
        {
            TraceParent = System.Diagnostics.Activity.Current?.Context ?? default,
        }.Init();
        var handle = new RequestHandle(this, active, cancellationToken);
        if (_loop.Disk is { } disk && request.PromptTokens.Count > 1)
        {
            // The restoring phase: the persistent store is asked, and a state this prompt extends
            // is read back, on the thread pool — neither the engine thread (which goes on decoding
            // everyone else) nor the caller waits on it. The request joins the queue after.
            _ = Task.Run(() => Restore(disk, active));
            return handle;
        }
        if (!_loop.Post(new EngineLoop.Submit(active)))
        {
            Metrics.QueuedRequestLeft();
            throw new EngineStoppedException();
        }
        return handle;
    }

    /// <summary>Looks a prompt up in the persistent store and reads the state back, then queues the
    /// request. A missing, corrupt, foreign or unreachable record means a plain prefill.</summary>
    void Restore(PersistentTier disk, ActiveRequest active)
    {
        var request = active.Request;
        try
        {
            if (!active.AbortRequested
                && disk.FindMatch(request.PromptTokens, request.ParentSessionId ?? request.SessionId, request.Owner) is { } stored)
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                active.Restored = disk.Load(stored);
                if (active.Restored is not null)
                {
                    Metrics.StateRestored(disk.Kind, clock.Elapsed.TotalSeconds);
                    // A continued stored response leaves its parent's record there (it may branch again).
                    if (request.ParentSessionId is null) disk.Forget(stored);
                }
            }
        }
        catch (Exception) { /* the store's own failures are counted and logged by the tier; prefill */ }
        if (_loop.Post(new EngineLoop.Submit(active))) return;
        // The engine stopped meanwhile: end the request as a submission would have.
        active.Restored?.Dispose();
        active.Restored = null;
        Metrics.QueuedRequestLeft();
        active.Events.Writer.TryWrite(new ErrorEvent("the engine is shutting down"));
        active.Events.Writer.TryComplete();
    }

    void Validate(GenerationRequest r)
    {
        if (r.PromptTokens is null || r.PromptTokens.Count == 0)
            throw new InvalidGenerationRequestException("the prompt must contain at least one token", "prompt");
        if (r.PromptTokens.Count > _options.MaxPromptTokens)
            throw new ContextTooLongException(r.PromptTokens.Count, _options.MaxPromptTokens);
        foreach (var t in r.PromptTokens)
            if (t < 0 || t >= _vocab) throw new InvalidGenerationRequestException($"token id {t} is outside the vocabulary (0..{_vocab - 1})", "prompt");
        int leastNew = r.PromptLogprobs is null ? 1 : 0;   // scoring a prompt may generate nothing
        if (r.MaxNewTokens < leastNew || r.MaxNewTokens > _options.MaxNewTokens)
            throw new InvalidGenerationRequestException($"max_tokens must be between {leastNew} and {_options.MaxNewTokens}, got {r.MaxNewTokens}", "max_tokens");
        if (r.PromptLogprobs is < 0 or > 20)
            throw new InvalidGenerationRequestException($"prompt logprobs must be between 0 and 20, got {r.PromptLogprobs}", "logprobs");
        if (r.MinNewTokens < 0 || r.MinNewTokens > r.MaxNewTokens)
            throw new InvalidGenerationRequestException($"min_tokens must be between 0 and max_tokens ({r.MaxNewTokens}), got {r.MinNewTokens}", "min_tokens");
        if (r.MinNewTokens > 0 && r.Constraint is not null)
            throw new InvalidGenerationRequestException("min_tokens cannot be combined with a constrained output (structured output or tools decide where the answer ends)", "min_tokens");
        if (r.N < 1 || r.N > _options.MaxChoices || r.N > _options.RunningLimit)
            throw new InvalidGenerationRequestException($"n must be between 1 and {Math.Min(_options.MaxChoices, _options.RunningLimit)}, got {r.N}", "n");
        if (r.TopLogprobs < 0 || r.TopLogprobs > 20)
            throw new InvalidGenerationRequestException($"top_logprobs must be between 0 and 20, got {r.TopLogprobs}", "top_logprobs");
        if (r.Sampling.Temperature < 0) throw new InvalidGenerationRequestException("temperature must not be negative", "temperature");
        if (r.Sampling.TopP is <= 0 or > 1) throw new InvalidGenerationRequestException("top_p must be in (0, 1]", "top_p");
        if (r.Sampling.TopK < 0) throw new InvalidGenerationRequestException("top_k must not be negative", "top_k");
        if (r.Sampling.MinP is < 0 or > 1) throw new InvalidGenerationRequestException("min_p must be in [0, 1]", "min_p");
        if (r.Sampling.RepetitionPenalty <= 0) throw new InvalidGenerationRequestException("repetition_penalty must be positive", "repetition_penalty");
        if (r.SampleableVocab is < 1) throw new InvalidGenerationRequestException("the sampleable vocabulary must hold at least one id", "model");
    }

    IRequestHandle IEngineClient.Submit(GenerationRequest request, CancellationToken cancellationToken) => Submit(request, cancellationToken);

    /// <summary>
    /// Forgets one conversation's parked states in every tier — device pool, host memory and the
    /// persistent store — and completes with how many were dropped (a deleted stored response).
    /// </summary>
    public Task<int> DropSessionAsync(string sessionId, string? owner)
    {
        var done = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_loop.Post(new EngineLoop.DropSession(sessionId, owner, done)))
        {
            if (_loop.Disk is { } disk) disk.DeleteSession(sessionId, owner, done, 0);
            else done.TrySetResult(0);
        }
        return done.Task;
    }

    internal void Abort(long id) => _loop.Post(new EngineLoop.Abort(id));
    internal void StopChoice(long id, int index) => _loop.Post(new EngineLoop.StopChoice(id, index));

    /// <summary>Stops accepting requests, cancels what runs, and waits for the engine thread.</summary>
    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        _loop.Stop();
        await _loop.Exited.ConfigureAwait(false);
    }
}

/// <summary>A submitted request: read its events; dispose it to cancel what is left.</summary>
public sealed class RequestHandle : IRequestHandle
{
    readonly EngineClient _client;
    readonly ActiveRequest _request;
    readonly CancellationTokenRegistration _registration;
    int _finished;

    internal RequestHandle(EngineClient client, ActiveRequest request, CancellationToken cancellationToken)
    {
        _client = client;
        _request = request;
        _registration = cancellationToken.Register(static h => ((RequestHandle)h!).Cancel(), this);
    }

    public long Id => _request.Id;
    public int PromptTokens => _request.Request.PromptTokens.Count;

    /// <summary>Events in order, ending with <see cref="UsageEvent"/> (or an <see cref="ErrorEvent"/>).
    /// Leaving the loop early cancels the request.</summary>
    public async IAsyncEnumerable<EngineEvent> ReadEventsAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var reader = _request.Events.Reader;
        try
        {
            while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                while (reader.TryRead(out var e))
                {
                    if (e is UsageEvent or ErrorEvent) Interlocked.Exchange(ref _finished, 1);
                    yield return e;
                }
        }
        finally
        {
            if (Volatile.Read(ref _finished) == 0) Cancel();
        }
    }

    /// <summary>Ends one choice now with finish reason "stop" (the text layer found a stop string).</summary>
    public void StopChoice(int index) => _client.StopChoice(_request.Id, index);

    public void Cancel()
    {
        if (Interlocked.Exchange(ref _finished, 1) != 0) return;
        _request.AbortRequested = true;   // a request still restoring is cancelled when it reaches the engine
        _client.Abort(_request.Id);
    }

    public ValueTask DisposeAsync()
    {
        Cancel();
        _registration.Dispose();
        return ValueTask.CompletedTask;
    }
}
