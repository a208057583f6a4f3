using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

internal sealed partial class EngineLoop
{
    /// <summary>Step 3: every decoding sequence feeds its pending token; one batched forward.</summary>
    int DecodeStep()
    {
        var batch = new List<Sequence>();
        var rows = new List<SamplingRow>();
        foreach (var s in _active.SelectMany(r => r.Choices).Where(s => s.Phase == SequencePhase.Decoding && s.Pending is not null).ToList())
            if (TryRow(s) is { } row) { batch.Add(s); rows.Add(row); }
        // A failed row fails its whole request: drop its other choices too.
        // Rows in slot order: consecutive slots form runs whose attention windows the model reads in place.
        var keep = Enumerable.Range(0, batch.Count).Where(i => !batch[i].Request.Done).OrderBy(i => batch[i].Slot).ToList();
        batch = keep.Select(i => batch[i]).ToList();
        rows = keep.Select(i => rows[i]).ToList();
        if (batch.Count == 0) return 0;
        Tensor logits;
        try
        {
            _executor!.Prepare(_store!.State, batch.Select(s => (IReadOnlyList<long>)new long[] { s.Pending!.Value }).ToList(),
                batch.Select(s => (long)s.Slot).ToArray(), rows);
            logits = _executor.Forward();
        }
        catch (Exception e) { FailAll(batch, e); return 0; }
        foreach (var s in batch) { s.Consumed.Add(s.Pending!.Value); s.Pending = null; }
        SampleAndApply(logits, batch, rows, null);
        return batch.Count;
    }

    /// <summary>Step 4: prompt chunks within the token budget, in one ragged batched forward
    /// (seeded prompts in a row-exact forward, or forwards of their own: the scheduler's rule).</summary>
    int PrefillStep()
    {
        var prefilling = _active.Select(r => r.Choices[0]).Where(s => s.Phase == SequencePhase.Prefilling);
        // Off the CPU the decode steps give no batch-invariance guarantee: nothing to keep.
        var seeded = !(RecurrentGemma.Model.Modules.BatchInvariance.Enabled && RecurrentGemma.Model.Modules.CpuPaths.On(_model.Device)) ? SeededPrefill.Shared
            : _model.RowExactAvailable ? SeededPrefill.RowExact : SeededPrefill.OwnForward;
        var forwards = Scheduler.PlanPrefill(prefilling, _options.PrefillTokenBudget, Math.Max(1, _options.ScoredChunkTokens),
            seeded, forwardTokens: Math.Max(1, _options.SeededForwardTokens));
        int tokens = 0;
        foreach (var forward in forwards) tokens += PrefillForward(forward.Rows, forward.RowExact);
        return tokens;
    }

    /// <summary>One forward over prompt chunks; the prompts it completes sample their first tokens
    /// right after it.</summary>
    int PrefillForward(List<(Sequence Sequence, int Tokens)> plan, bool rowExact)
    {
        // Choices whose prompt this chunk completes sample now: their rows are known before the forward.
        var candidates = new List<(Sequence Choice, SamplingRow Row, Sequence Main)>();
        foreach (var (seq, n) in plan)
            if (seq.PromptRemaining == n && seq.Request.Request.MaxNewTokens > 0)
                foreach (var c in seq.Request.Choices)
                    if (TryRow(c) is { } row) candidates.Add((c, row, seq));
        plan = plan.Where(p => !p.Sequence.Request.Done).ToList();   // a failed row failed its request
        if (plan.Count == 0) return 0;
        var chunks = plan.Select(p => (IReadOnlyList<long>)p.Sequence.Request.Request.PromptTokens
            .Skip(p.Sequence.Consumed.Count).Take(p.Tokens).Select(t => (long)t).ToArray()).ToList();
        candidates = candidates.Where(c => !c.Choice.Request.Done).ToList();
        var firstTokenRows = candidates.Select(c => c.Choice).ToList();
        var samplingRows = candidates.Select(c => c.Row).ToList();
        var logitRows = candidates.Select(c => plan.FindIndex(p => p.Sequence == c.Main)).ToList();

        // A scored prompt runs alone (the scheduler's rule): its positions predict the prompt's
        // next ids, and its last position, when it ends the prompt, is the sampled one.
        var scored = plan.Count == 1 && plan[0].Sequence.Request.Request.PromptLogprobs is not null ? plan[0] : default;
        int[]? scoreTargets = null;
        if (scored.Sequence is { } sc)
        {
            var prompt = sc.Request.Request.PromptTokens;
            int from = sc.Consumed.Count + 1, count = Math.Min(scored.Tokens, prompt.Count - from);
            scoreTargets = prompt.Skip(from).Take(count).ToArray();
            logitRows = logitRows.Select(_ => scored.Tokens - 1).ToList();
        }

        Tensor logits;
        try
        {
            _executor!.Prepare(_store!.State, chunks, plan.Select(p => (long)p.Sequence.Slot).ToArray(), samplingRows, [.. logitRows],
                scoreTargets, scored.Sequence?.Request.Request.PromptLogprobs ?? 0, rowExact);
            logits = _executor.Forward();
        }
        catch (Exception e) { FailAll(plan.Select(p => p.Sequence).ToList(), e); return 0; }
        if (scored.Sequence is { } scoring && firstTokenRows.Count == 0)
        {
            // Nothing to sample in this chunk: its one download carries the scores alone.
            try { _executor.Sample(logits); scoring.Request.PromptScores.AddRange(_executor.LastScores); }
            catch (Exception e) { Fail(scoring.Request, $"scoring the prompt failed: {e.Message}"); }
        }

        for (int i = 0; i < plan.Count; i++)
        {
            var (seq, n) = plan[i];
            var request = seq.Request;
            seq.Consumed.AddRange(request.Request.PromptTokens.Skip(seq.Consumed.Count).Take(n));
            if (seq.PromptRemaining > 0 || request.Done) continue;

            // The prompt is in: snapshot the turn boundary, fork for n > 1 (device copies, no sync).
            var req = request.Request;
            if (req.PromptLogprobs is not null && req.MaxNewTokens == 0) request.Events.Writer.TryWrite(new PromptLogprobsEvent(request.PromptScores));
            if (_options.ParkFinishedStates && _options.SnapshotAtPromptEnd && req.KeepState && req.SnapshotPrompt)
                _store!.TryParkCopy(seq.Slot, seq.Consumed, req.SessionId, req.Owner);
            foreach (var c in request.Choices)
            {
                if (c.Index > 0)
                {
                    _store!.State.CopySlot(seq.Slot, c.Slot);
                    c.Consumed.AddRange(seq.Consumed);
                }
                c.Phase = SequencePhase.Decoding;
            }
            if (req.MaxNewTokens == 0)   // prefill only: a scored prompt with nothing to generate
                foreach (var c in request.Choices) Finish(c, FinishReason.Length);
        }
        if (firstTokenRows.Count > 0) SampleAndApply(logits, firstTokenRows, samplingRows, [.. logitRows], scored.Sequence);
        return plan.Sum(p => p.Tokens);
    }

    /// <summary>The sampler's view of one choice, or null when building it failed (that request
    /// fails; the rest of the step goes on).</summary>
    SamplingRow? TryRow(Sequence s)
    {
        try
        {
            var req = s.Request.Request;
            RowHook?.Invoke(req);
            // A constrained choice's mask is computed on the thread pool while the forward runs.
            var constraint = s.Constraint;
            return new SamplingRow(req.Sampling, SeededUniform.Draw(s.Seed, s.Draws), req.PromptTokens, s.Generated,
                req.TopLogprobs, req.Logprobs, req.SampleableVocab, constraint is null ? null : Task.Run(constraint.Allowed),
                s.Generated.Count < req.MinNewTokens ? req.StopTokenIds : null);
        }
        catch (Exception e)
        {
            Fail(s.Request, $"preparing the sampler failed: {e.Message}");
            return null;
        }
    }

    /// <summary>One batched sampling pass; if it throws, each row is sampled alone so that only
    /// the rows that fail again fail their requests.</summary>
    /// <param name="scored">the sequence whose prompt this pass also scored (its last chunk): its
    /// prompt log-probabilities go out before its first token.</param>
    void SampleAndApply(Tensor logits, List<Sequence> seqs, List<SamplingRow> rows, int[]? logitRows, Sequence? scored = null)
    {
        int[] tokens;
        TokenLogprob?[] logprobs;
        try
        {
            (tokens, logprobs) = _executor!.Sample(logits);
            if (scored is not null)
            {
                scored.Request.PromptScores.AddRange(_executor.LastScores);
                scored.Request.Events.Writer.TryWrite(new PromptLogprobsEvent(scored.Request.PromptScores));
            }
        }
        catch (Exception)
        {
            if (scored is not null) Fail(scored.Request, "scoring the prompt failed");
            tokens = new int[seqs.Count];
            logprobs = new TokenLogprob?[seqs.Count];
            for (int i = 0; i < seqs.Count; i++)
            {
                try { (tokens[i], logprobs[i]) = _executor!.SampleAlone(logits, logitRows?[i] ?? i, rows[i]); }
                catch (Exception e) { tokens[i] = -1; Fail(seqs[i].Request, $"sampling failed: {e.Message}"); }
            }
        }
        for (int i = 0; i < seqs.Count; i++)
        {
            var s = seqs[i];
            if (tokens[i] < 0 || s.Request.Done || s.Phase == SequencePhase.Finished) continue;
            s.Draws++;
            try
            {
                RowHook?.Invoke(s.Request.Request);
                Apply(s, tokens[i], logprobs[i]);
            }
            catch (Exception e) { Fail(s.Request, $"processing a sampled token failed: {e.Message}"); }
        }
    }

    /// <summary>A sampled token: a stop id ends the choice unseen; otherwise it is emitted and
    /// becomes pending, unless the choice reached max tokens or was asked to stop.</summary>
    void Apply(Sequence s, int token, TokenLogprob? logprob)
    {
        var req = s.Request.Request;
        if (req.StopTokenIds.Contains(token)) { Finish(s, FinishReason.Stop); return; }
        if (s.Constraint is { } constraint && !constraint.Advance(token))
            throw new InvalidOperationException($"token {token} was sampled outside the constraint");
        s.Generated.Add(token);
        s.Request.FirstTokenAt ??= DateTimeOffset.UtcNow;
        s.Request.Events.Writer.TryWrite(new TokenEvent(s.Index, token, logprob));
        Metrics.TokenGenerated();
        if (s.StopRequested || s.Constraint?.MustStop == true) Finish(s, FinishReason.Stop);
        else if (s.Generated.Count >= req.MaxNewTokens) Finish(s, FinishReason.Length);
        else s.Pending = token;
    }

    /// <summary>Step 5: a finished choice parks (choice 0 of a completed request) or frees its slot.</summary>
    void Finish(Sequence s, FinishReason reason)
    {
        if (s.Phase == SequencePhase.Finished) return;
        bool hadSlot = s.Slot >= 0;
        var request = s.Request;
        s.Phase = SequencePhase.Finished;
        s.Pending = null;
        request.Events.Writer.TryWrite(new FinishedEvent(s.Index, reason));
        if (hadSlot)
        {
            var req = request.Request;
            if (reason != FinishReason.Cancelled && s.Index == 0 && _options.ParkFinishedStates && req.KeepState)
                _store!.Park(s.Slot, s.Consumed, req.SessionId, req.Owner);
            else _store!.Release(s.Slot);
            s.Slot = -1;
        }
        if (request.Choices.All(c => c.Phase == SequencePhase.Finished)) Complete(request);
    }

    void Complete(ActiveRequest r)
    {
        if (r.Done) return;
        r.Done = true;
        r.Events.Writer.TryWrite(new UsageEvent(r.Request.PromptTokens.Count, r.Choices.Sum(c => c.Generated.Count), r.CachedTokens));
        _active.Remove(r);
        Publish();   // a caller that saw its request end then finds its state parked or freed in the snapshot
        r.Events.Writer.TryComplete();
        EngineTracing.Emit(r, r.Cancelled ? "cancelled" : "completed");
    }

    void CancelRequest(ActiveRequest r)
    {
        r.Restored?.Dispose();
        r.Restored = null;
        if (r.Done) return;
        r.Cancelled = true;
        if (!r.Admitted)
        {
            // Still queued: it never held a slot.
            _waiting.Remove(r);
            Metrics.QueuedRequestLeft();
        }
        foreach (var c in r.Choices) Finish(c, FinishReason.Cancelled);
        Complete(r);
    }

    void FailAll(List<Sequence> sequences, Exception e)
    {
        foreach (var r in sequences.Select(s => s.Request).Distinct().ToList()) Fail(r, $"the model failed: {e.Message}");
    }

    void Fail(ActiveRequest r, string message)
    {
        if (r.Done) return;
        r.Events.Writer.TryWrite(new ErrorEvent(message));
        foreach (var c in r.Choices)
        {
            if (c.Slot >= 0 && _store is not null) _store.Release(c.Slot);
            c.Slot = -1;
            c.Phase = SequencePhase.Finished;
        }
        r.Done = true;
        _active.Remove(r);
        Publish();
        r.Events.Writer.TryComplete();
    }

    void Publish()
    {
        var store = _store;
        Snapshot = new EngineSnapshot(
            QueuedRequests: _waiting.Count,
            RunningSequences: _active.Sum(a => a.Choices.Count(c => c.Phase != SequencePhase.Finished)),
            SlotsTotal: store?.Capacity ?? 0,
            SlotsUsed: store?.UsedCount ?? 0,
            SlotsParked: store?.ParkedCount ?? 0,
            SlotsFree: store?.FreeCount ?? 0,
            Evictions: store?.Evictions ?? 0,
            SessionHits: store?.SessionHits ?? 0,
            ReusedTokens: store?.ReusedTokens ?? 0,
            StateBytesPerSlot: store?.State.BytesPerSlot ?? 0,
            LiveTensorsOnEngineThread: TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount,
            TensorsCreated: TorchSharp.DisposeScopeManager.Statistics.CreatedInScopeCount + TorchSharp.DisposeScopeManager.Statistics.CreatedOutsideScopeCount,
            Steps: _step,
            ForwardSeconds: _executor?.ForwardSeconds ?? 0,
            SamplerSeconds: _executor?.SamplerSeconds ?? 0,
            HostTransfers: _executor?.Transfers.Total ?? 0,
            Forwards: _executor?.Forwards ?? 0,
            BusySeconds: _busySeconds,
            HostStates: store?.HostTierStats.Count ?? 0,
            HostBytes: store?.HostTierStats.Bytes ?? 0,
            Demotions: store?.HostTierStats.Demotions ?? 0,
            HostRestores: store?.HostTierStats.Restores ?? 0,
            StoreWrites: Disk?.Writes ?? 0,
            StoreLoads: Disk?.Loads ?? 0,
            StoreErrors: Disk?.Errors ?? 0,
            RecentStepSeconds: _recentStepSeconds);
    }
}

/// <summary>What the engine looks like right now (published after every step, and before a
/// request's events end or a dropped session's task completes).</summary>
public sealed record EngineSnapshot(int QueuedRequests, int RunningSequences, int SlotsTotal, int SlotsUsed, int SlotsParked,
    int SlotsFree, long Evictions, long SessionHits, long ReusedTokens, long StateBytesPerSlot, long LiveTensorsOnEngineThread, long Steps,
    double ForwardSeconds = 0, double SamplerSeconds = 0, double BusySeconds = 0, long TensorsCreated = 0, long HostTransfers = 0, long Forwards = 0,
    int HostStates = 0, long HostBytes = 0, long Demotions = 0, long HostRestores = 0,
    long StoreWrites = 0, long StoreLoads = 0, long StoreErrors = 0, double RecentStepSeconds = 0)
{
    public static EngineSnapshot Empty { get; } = new(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    public double SlotUsageRatio => SlotsTotal == 0 ? 0 : (double)SlotsUsed / SlotsTotal;
}
