using System.Diagnostics;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// The device side of one engine step, in three calls: <see cref="Prepare"/> writes the
/// forward's and the sampler's inputs into one step buffer and copies it to the device (the
/// step's one host→device transfer); <see cref="Forward"/> runs the model without syncing;
/// <see cref="Sample"/> runs the batched sampler and reads the packed results back (the one
/// device→host transfer). Every transfer goes through the <see cref="TransferCounter"/>, so a
/// test can hold the step to its budget. Owned by the engine thread; tensors live in the
/// caller's dispose scope.
/// </summary>
internal sealed class StepExecutor(GriffinForCausalLM model) : IDisposable
{
    readonly StepBuffer _buffer = new(model.Device);
    ForwardPlan? _forward;
    SamplerPlan? _sampler;
    ScorePlan? _score;
    IReadOnlyList<int> _scoreTargets = [];
    IReadOnlyList<SamplingRow> _rows = [];

    public TransferCounter Transfers => _buffer.Counter;
    public double ForwardSeconds { get; private set; }
    public double SamplerSeconds { get; private set; }
    public long Forwards { get; private set; }

    int _allThreads, _current, _decodeRows;
    AdaptiveDecodeThreads? _threads;
    string? _threadsKey;
    long _savedSwitches, _savedRecorded;
    string _calibration = "";

    /// <summary>The start-up measurement and the choice now (it adapts while the engine runs).</summary>
    public string ThreadChoice => _threads is null ? _calibration : $"{_calibration}; now {_threads.Describe()}";

    /// <summary>Measures the thread count for decode steps (<see cref="ThreadCalibration"/>).</summary>
    /// <summary>Times decode steps of up to <paramref name="maxBatch"/> rows in a scratch state (before the slot pool exists).</summary>
    public void Calibrate(int maxBatch)
    {
        _allThreads = _current = ThreadCalibration.AllThreads;
        var plan = ThreadCalibration.Calibrate(model, maxBatch: maxBatch);
        _calibration = $"decode: {plan.Reason}";
        if (plan.Buckets.Count > 0) _threads = new AdaptiveDecodeThreads(plan);
        _threadsKey = plan.Key;
    }

    /// <summary>
    /// Writes what the running engine learned about decode threads to the kernel-choices file
    /// (when the process keeps one): when a bucket changes sides, and at the end, so the next
    /// process starts from this run's steps rather than from one start-up moment.
    /// </summary>
    void SaveThreads()
    {
        if (_threads is null || _threadsKey is null) return;
        _savedSwitches = _threads.Switches;
        _savedRecorded = _threads.Recorded;
        ThreadCalibration.Remember(_threadsKey, _threads.Snapshot(), $"learned while running: {_threads.Describe()}");
    }

    void UseThreads(bool decode, int rows)
    {
        _decodeRows = decode ? rows : 0;
        if (_threads is null) return;
        int want = decode ? _threads.Choose(rows) : _allThreads;
        // The count is libtorch's, process-wide: asked each step rather than remembered, since
        // another engine in the process (test servers share one) may have changed it, and some
        // of libtorch's products round differently on another number of threads.
        if (want != _current || want != get_num_threads()) { set_num_threads(want); _current = want; }
    }

    /// <param name="samples">rows to sample after the forward; <paramref name="logitRows"/> says
    /// which forward row each one reads (null: one per forward row, in order).</param>
    /// <param name="scoreTargets">a scored chunk (one row): the prompt ids its first positions
    /// predict; the forward then keeps every position's logits (row r, position t is logit row
    /// r·T + t), and <see cref="Sample"/> also returns their log-probabilities.</param>
    /// <param name="rowExact">a row-exact forward (seeded prompts: each row as it would be alone), on every thread
    /// like any prefill — its one-token rows too, so a row's libtorch ops split alike wherever it runs.
    /// A lone chunk of 8–16 tokens takes it anyway where it timed faster.</param>
    public void Prepare(GriffinState state, IReadOnlyList<IReadOnlyList<long>> tokens, long[] slots,
        IReadOnlyList<SamplingRow> samples, int[]? logitRows = null, IReadOnlyList<int>? scoreTargets = null, int scoreTop = 0,
        bool rowExact = false)
    {
        _buffer.Clear();
        // One short prompt chunk alone (often a conversation's next turn on its parked state) is
        // served faster by the row-exact forward's kernels where they timed so; any prompt may take it.
        rowExact |= tokens.Count == 1 && scoreTargets is null && model.RowExactFasterAlone(tokens[0].Count);
        UseThreads(decode: !rowExact && tokens.All(t => t.Count == 1), tokens.Count);
        _forward = model.Plan(_buffer, state, tokens, slots, scoreTargets is null ? LogitsSelection.LastValid : LogitsSelection.All, rowExact);
        _rows = samples;
        _sampler = samples.Count > 0 ? Sampler.Plan(_buffer, samples, model.Config.VocabSize, logitRows) : null;
        _scoreTargets = scoreTargets ?? [];
        _score = scoreTargets is { Count: > 0 } ? PromptScorer.Plan(_buffer, scoreTargets, scoreTop) : null;
        _buffer.Upload();
    }

    /// <summary>The prompt log-probabilities of the last <see cref="Sample"/> (empty when it scored none).</summary>
    public IReadOnlyList<TokenLogprob> LastScores { get; private set; } = [];

    /// <returns>[B, 1, V] float32 logits of each row's last token (on the device).</returns>
    public Tensor Forward()
    {
        var clock = Stopwatch.StartNew();
        var logits = model.Forward(_forward ?? throw new InvalidOperationException("Prepare first"));
        Forwards++;
        ForwardSeconds += clock.Elapsed.TotalSeconds;
        // On the CPU the forward has finished here (no device queue), so this is the step's compute time.
        if (_decodeRows > 0 && _threads is not null)
        {
            _threads.Record(_decodeRows, _current, clock.Elapsed.TotalMilliseconds);
            if (_threads.Switches != _savedSwitches) SaveThreads();   // rare: a file write on the engine thread is fine
        }
        return logits;
    }

    /// <summary>Samples the planned rows and scores the planned prompt positions, both in the
    /// step's one device→host copy.</summary>
    public (int[] Tokens, TokenLogprob?[] Logprobs) Sample(Tensor logits)
    {
        LastScores = [];
        if (_sampler is null && _score is null) return ([], []);
        var clock = Stopwatch.StartNew();
        // Scored first: the sampler may change a batch's logits in place (never a row it selected).
        var scores = _score is null ? null : PromptScorer.Score(logits, _score, _buffer);
        var parts = new List<Tensor>(2);
        if (_sampler is not null) parts.Add(Sampler.Sample(logits, _sampler, _buffer));
        if (scores is not null) parts.Add(scores);
        var packed = _buffer.Download(parts.Count == 1 ? parts[0] : cat(parts, 0));
        int sampled = packed.Length - (_score?.PackedLength ?? 0);   // the scores are packed last
        var result = _sampler is null ? ([], []) : Sampler.Unpack(packed, _sampler, _rows);
        if (_score is not null) LastScores = PromptScorer.Unpack(packed.AsSpan(sampled), _score, _scoreTargets);
        SamplerSeconds += clock.Elapsed.TotalSeconds;
        return result;
    }

    /// <summary>Samples one row on its own (after a batched pass failed): its own transfers.</summary>
    public (int Token, TokenLogprob? Logprob) SampleAlone(Tensor logits, int logitRow, SamplingRow row)
    {
        using var one = logits.reshape(-1, logits.size(-1)).narrow(0, logitRow, 1);
        var (tokens, logprobs) = Sampler.SampleOnce(one, [row], Transfers);
        return (tokens[0], logprobs[0]);
    }

    public void Dispose()
    {
        if (_threads is not null && _threads.Recorded != _savedRecorded) SaveThreads();
        if (_allThreads > 0) set_num_threads(_allThreads);   // leave the process as we found it
        _buffer.Dispose();
    }
}
