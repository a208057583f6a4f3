using System.Diagnostics.Metrics;

namespace RecurrentGemma.Engine;

/// <summary>
/// The engine's instruments on a <see cref="Meter"/> named <see cref="MeterName"/> (exported by
/// the server through OpenTelemetry). Gauges read the latest <see cref="EngineSnapshot"/>.
/// </summary>
public sealed class EngineMetrics : IDisposable
{
    public const string MeterName = "RecurrentGemma.Engine";

    readonly Meter _meter;
    readonly Counter<long> _promptTokens, _generatedTokens, _cachedTokens, _requests;
    readonly Histogram<double> _stepSeconds;
    readonly Histogram<int> _batchSize;
    readonly Histogram<double> _restoreSeconds;
    int _queued;

    public Func<EngineSnapshot> Snapshot { get; set; } = () => EngineSnapshot.Empty;

    public EngineMetrics(IMeterFactory? factory = null)
    {
        _meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        _promptTokens = _meter.CreateCounter<long>("rgemma.engine.prefill_tokens", "{token}", "Prompt tokens prefilled (reused tokens excluded)");
        _generatedTokens = _meter.CreateCounter<long>("rgemma.engine.generation_tokens", "{token}", "Tokens generated");
        _cachedTokens = _meter.CreateCounter<long>("rgemma.engine.cached_tokens", "{token}", "Prompt tokens served from a parked state");
        _requests = _meter.CreateCounter<long>("rgemma.engine.requests_admitted", "{request}", "Requests admitted to run");
        _stepSeconds = _meter.CreateHistogram("rgemma.engine.step_duration", "s", "Duration of one engine step (decode + prefill)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _batchSize = _meter.CreateHistogram("rgemma.engine.decode_batch_size", "{sequence}", "Sequences in one batched decode step",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128] });
        _restoreSeconds = _meter.CreateHistogram("rgemma.engine.state_restore_duration", "s",
            "Time to bring a parked state back from a lower tier (tier: host, disk or redis)",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] });
        _meter.CreateObservableGauge("rgemma.engine.requests_waiting", () => Snapshot().QueuedRequests, "{request}", "Requests queued for admission");
        _meter.CreateObservableGauge("rgemma.engine.sequences_running", () => Snapshot().RunningSequences, "{sequence}", "Sequences prefilling or decoding");
        _meter.CreateObservableGauge("rgemma.engine.state_slots_used", () => Snapshot().SlotsUsed, "{slot}", "State slots held by running sequences");
        _meter.CreateObservableGauge("rgemma.engine.state_slots_total", () => Snapshot().SlotsTotal, "{slot}", "State slots in the pool");
        _meter.CreateObservableGauge("rgemma.engine.state_slots_usage_ratio", () => Snapshot().SlotUsageRatio, null, "Used ÷ total state slots (the autoscaling signal)");
        _meter.CreateObservableGauge("rgemma.engine.parked_sessions", () => Snapshot().SlotsParked, "{state}", "Finished states parked for reuse");
        _meter.CreateObservableCounter("rgemma.engine.evictions", () => Snapshot().Evictions, "{state}", "Parked states evicted to make room");
        _meter.CreateObservableGauge("rgemma.engine.host_states", () => Snapshot().HostStates, "{state}", "Parked states held in host memory");
        _meter.CreateObservableGauge("rgemma.engine.host_state_bytes", () => Snapshot().HostBytes, "By", "Bytes of parked states in host memory");
        _meter.CreateObservableCounter("rgemma.engine.state_demotions", () => Snapshot().Demotions, "{state}", "Parked states moved from the device pool to host memory");
        _meter.CreateObservableCounter("rgemma.engine.state_restores", () => Snapshot().HostRestores, "{state}", "Parked states restored from host memory into a slot");
        _meter.CreateObservableCounter("rgemma.engine.store_writes", () => Snapshot().StoreWrites, "{state}", "States written to the persistent tier (disk or Redis)");
        _meter.CreateObservableCounter("rgemma.engine.store_loads", () => Snapshot().StoreLoads, "{state}", "States read back from the persistent tier");
        _meter.CreateObservableCounter("rgemma.engine.store_errors", () => Snapshot().StoreErrors, "{error}", "Persistent-tier failures (unreachable, corrupt, foreign): each turn prefilled instead");
        _meter.CreateObservableCounter("rgemma.engine.session_hits", () => Snapshot().SessionHits, "{request}", "Requests that continued a parked state");
    }

    /// <summary>Requests submitted and not yet admitted or cancelled (the bounded queue).</summary>
    public int QueuedCount => Volatile.Read(ref _queued);

    internal bool TryEnqueue(int capacity)
    {
        while (true)
        {
            int q = Volatile.Read(ref _queued);
            if (q >= capacity) return false;
            if (Interlocked.CompareExchange(ref _queued, q + 1, q) == q) return true;
        }
    }

    internal void QueuedRequestLeft() => Interlocked.Decrement(ref _queued);

    internal void RequestAdmitted(int cachedTokens)
    {
        Interlocked.Decrement(ref _queued);
        _requests.Add(1);
        _cachedTokens.Add(cachedTokens);   // also 0: the series exists from the first request on
    }

    internal void StateRestored(string tier, double seconds) =>
        _restoreSeconds.Record(seconds, new KeyValuePair<string, object?>("tier", tier));

    internal void TokenGenerated() => _generatedTokens.Add(1);

    internal void RecordStep(double seconds, int decodeBatch, int prefillTokens)
    {
        _stepSeconds.Record(seconds);
        if (decodeBatch > 0) _batchSize.Record(decodeBatch);
        if (prefillTokens > 0) _promptTokens.Add(prefillTokens);
    }

    public void Dispose() => _meter.Dispose();
}
