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
    IReadOnlyList<SamplingRow> _rows = [];

    public TransferCounter Transfers => _buffer.Counter;
    public double ForwardSeconds { get; private set; }
    public double SamplerSeconds { get; private set; }
    public long Forwards { get; private set; }

    int _allThreads, _current, _decodeRows;
    AdaptiveDecodeThreads? _threads;
    string _calibration = "";

    /// <summary>The start-up measurement and the choice now (it adapts while the engine runs).</summary>
    public string ThreadChoice => _threads is null ? _calibration : $"{_calibration}; now {_threads.Describe()}";

    /// <summary>Measures the thread count for decode steps (<see cref="ThreadCalibration"/>).</summary>
    public void Calibrate()
    {
        _allThreads = _current = ThreadCalibration.AllThreads;
        var plan = ThreadCalibration.Calibrate(model);
        _calibration = $"decode: {plan.Reason}";
        if (plan.Buckets.Count > 0) _threads = new AdaptiveDecodeThreads(plan);
    }

    void UseThreads(bool decode, int rows)
    {
        _decodeRows = decode ? rows : 0;
        if (_threads is null) return;
        int want = decode ? _threads.Choose(rows) : _allThreads;
        if (want != _current) { set_num_threads(want); _current = want; }
    }

    /// <param name="samples">rows to sample after the forward; <paramref name="logitRows"/> says
    /// which forward row each one reads (null: one per forward row, in order).</param>
    public void Prepare(GriffinState state, IReadOnlyList<IReadOnlyList<long>> tokens, long[] slots,
        IReadOnlyList<SamplingRow> samples, int[]? logitRows = null)
    {
        _buffer.Clear();
        UseThreads(decode: tokens.All(t => t.Count == 1), tokens.Count);
        _forward = model.Plan(_buffer, state, tokens, slots);
        _rows = samples;
        _sampler = samples.Count > 0 ? Sampler.Plan(_buffer, samples, model.Config.VocabSize, logitRows) : null;
        _buffer.Upload();
    }

    /// <returns>[B, 1, V] float32 logits of each row's last token (on the device).</returns>
    public Tensor Forward()
    {
        var clock = Stopwatch.StartNew();
        var logits = model.Forward(_forward ?? throw new InvalidOperationException("Prepare first"));
        Forwards++;
        ForwardSeconds += clock.Elapsed.TotalSeconds;
        // On the CPU the forward has finished here (no device queue), so this is the step's compute time.
        if (_decodeRows > 0) _threads?.Record(_decodeRows, _current, clock.Elapsed.TotalMilliseconds);
        return logits;
    }

    public (int[] Tokens, TokenLogprob?[] Logprobs) Sample(Tensor logits)
    {
        if (_sampler is null) return ([], []);
        var clock = Stopwatch.StartNew();
        var packed = _buffer.Download(Sampler.Sample(logits, _sampler, _buffer));
        var result = Sampler.Unpack(packed, _sampler, _rows);
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
        if (_allThreads > 0) set_num_threads(_allThreads);   // leave the process as we found it
        _buffer.Dispose();
    }
}
