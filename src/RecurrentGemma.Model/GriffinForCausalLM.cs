using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>
/// A Griffin language model: parameters only — every per-sequence value lives in a
/// <see cref="GriffinState"/> passed in, so one model serves any number of sequences.
///   x⁰ = E[tok] · bf16(√D);  xˡ⁺¹ = ResidualBlockₗ(xˡ);  logits = c·tanh(RMSNorm(xᴺ)·Eᵀ / c)
/// One entry point, <see cref="Forward(ForwardPlan, Action{string, Tensor})"/>, serves prefill
/// (T tokens), chunked prefill (any chunk on top of any state) and batched decode (T = 1):
/// decode is just a chunk of one token, so the paths cannot disagree.
/// </summary>
public sealed class GriffinForCausalLM : nn.Module
{
    readonly GriffinModel model;

    public GriffinConfig Config { get; }
    public ScalarType DType { get; }
    public Device Device { get; }

    public GriffinForCausalLM(GriffinConfig config, ScalarType dtype, Device device) : base(nameof(GriffinForCausalLM))
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"model dtype must be float32 or bfloat16, not {dtype}", nameof(dtype));
        Config = config.Validate();
        DType = dtype;
        Device = device;
        model = new GriffinModel(config, dtype, device);
        RegisterComponents();
    }

    /// <summary>A state pool shaped for this model (slots start empty).</summary>
    public GriffinState CreateState(int capacity) => new(Config, capacity, DType, Device);

    float[]? _invFreq;

    /// <summary>Told "embed", "block{l}" and "head" as each part of a forward finishes, while that
    /// part's tensors are still held ("block{l}" before its layer's scope ends, "head" after the soft
    /// cap) — unlike a trace it changes nothing in the pass (the step benchmark counts ops and
    /// allocated bytes with it, the profile times the parts).</summary>
    public Action<string>? PartDone { get; set; }

    /// <summary>
    /// Derives what every forward pass would otherwise recompute from the weights (float32 norm
    /// gains, fused RG-LRU gate weights, −8·softplus(λ), conv taps, rotary frequencies). Call after
    /// the weights are loaded or changed; the loader and <see cref="RandomWeights"/> do.
    /// </summary>
    public void Prepare()
    {
        using var noGrad = no_grad();
        foreach (var layer in model.Layers) layer.Prepare();
        model.FinalNorm.Prepare();
        // ω_i = θ^(−2i/R) computed by torch in float32 as the reference does, read back once.
        using var scope = NewDisposeScope();
        int half = Config.RotaryDim / 2;
        var exponents = arange(Scalars.Zero, Scalars.Of((long)half), Scalars.One, ScalarType.Float32).mul_(Scalars.Of((double)(2.0f / Config.RotaryDim)));
        _invFreq = full_like(exponents, Scalars.Of((double)(float)Config.RopeTheta)).pow_(exponents).reciprocal_().data<float>().ToArray();
    }

    /// <summary>
    /// The host half of a forward pass: validates the rows and writes everything the layers need
    /// into <paramref name="buffer"/>. After <see cref="StepBuffer.Upload"/>, run
    /// <see cref="Forward(ForwardPlan, Action{string, Tensor})"/> with the plan.
    /// </summary>
    /// <param name="tokens">B rows of 1…T token ids; shorter rows are right-padded.</param>
    /// <param name="slots">a distinct state slot per row; each advances by its row's length.</param>
    /// <param name="rowExact">each row's logits and state to the bit as it would get them alone, whatever else
    /// the forward holds (<see cref="RowExactForward"/>; needs <see cref="RowExactAvailable"/>; last positions only).</param>
    public ForwardPlan Plan(StepBuffer buffer, GriffinState state, IReadOnlyList<IReadOnlyList<long>> tokens, long[] slots,
        LogitsSelection which = LogitsSelection.LastValid, bool rowExact = false)
    {
        if (tokens.Count == 0) throw new ArgumentException("at least one row is needed", nameof(tokens));
        if (slots.Length != tokens.Count) throw new ArgumentException($"{slots.Length} slots for {tokens.Count} rows", nameof(slots));
        foreach (var row in tokens)
        {
            if (row.Count == 0) throw new ArgumentException("a chunk needs at least one token", nameof(tokens));
            foreach (var id in row)
                if (id < 0 || id >= Config.VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");
        }
        if (slots.Distinct().Count() != slots.Length) throw new ArgumentException("slots must be distinct", nameof(slots));
        foreach (var s in slots) state.CheckSlot((int)s);
        if (state.Config != Config || state.DType != DType)
            throw new ArgumentException("state was created for another model shape or dtype", nameof(state));
        if (_invFreq is null) throw new InvalidOperationException("the model was not prepared after loading its weights (call Prepare)");
        if (!rowExact) return new ForwardPlan(state, buffer, tokens, slots, which, _invFreq);
        if (which != LogitsSelection.LastValid) throw new ArgumentException("a row-exact forward gives the last positions' logits only", nameof(which));
        if (!RowExactAvailable) throw new InvalidOperationException("a row-exact forward needs the model's own GEMM kernel for its dtype on the CPU: " + RowExactStatus);
        return new ForwardPlan(state, buffer, tokens, slots, _invFreq);
    }

    /// <summary>Whether <see cref="Plan"/> can build a row-exact forward here (the CPU kernels it rests on: <see cref="RowExactGemm"/>).</summary>
    public bool RowExactAvailable => RowExactGemm.Available(Config, DType, Device);

    /// <summary>Whether a forward of one prompt chunk this long runs faster row-exact here (<see cref="RowExactGemm.TakesLoneChunk"/>).</summary>
    public bool RowExactFasterAlone(int tokens) => RowExactGemm.TakesLoneChunk(tokens, Config, DType, Device);

    /// <summary>Times the row-exact forward's few-row choices now rather than in a request (<see cref="RowExactGemm.TimeChoices"/>).</summary>
    public void TimeRowExactChoices() => RowExactGemm.TimeChoices(Config, DType, Device);

    long _rowExactForwards;

    /// <summary>Row-exact forwards run so far (tests, benchmarks).</summary>
    public long RowExactForwards => Interlocked.Read(ref _rowExactForwards);

    string RowExactStatus => DType == ScalarType.Float32 ? F32Gemm.Status : Bf16Gemm.Status;

    /// <summary>
    /// Runs B sequences, each from its own slot, over a chunk of tokens: prefill (T tokens),
    /// chunked prefill (any chunk on top of any state) and batched decode (T = 1) are one path.
    /// Reads its inputs from the plan's uploaded buffer only: nothing syncs with the host.
    /// </summary>
    /// <param name="trace">optional observer of intermediate activations (tests, debugging).</param>
    /// <returns>float32 logits: [B, 1, V] for each row's last token, or [B, T, V] with All.</returns>
    public Tensor Forward(ForwardPlan plan, Action<string, Tensor>? trace = null)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        if (plan.Rows is not null)
        {
            if (trace is not null) throw new ArgumentException("a row-exact forward takes no trace", nameof(trace));
            Interlocked.Increment(ref _rowExactForwards);
            return RowExactForward.Run(model, Config, plan, PartDone).MoveToOuterDisposeScope();
        }
        var batch = new ForwardBatch(plan, trace);
        int b = plan.B, t = plan.T;

        var x = model.EmbedTokens.Lookup(batch.Tokens).mul_(Scalars.Of(Config.EmbeddingScale)).view(b, t, -1);  // [B, T, D]
        trace?.Invoke("embed.out", x);
        PartDone?.Invoke("embed");
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            // A layer's temporaries are freed as it ends, so a pass holds one layer's activations at
            // a time: kept to the end, a 512-token prefill of the small bench shape (12 layers)
            // grew RSS by 0.5 GB, and the heap keeps what it once held (MemoryTuning).
            using (var layerScope = NewDisposeScope())
            {
                var y = model.Layers[l].Forward(x, batch, l);
                if (layerScope.Contains(y)) layerScope.MoveToOther(scope, y);   // a fresh output (a trace is observing); else x in place
                x = y;
                PartDone?.Invoke($"block{l}");   // while the layer's tensors are still held (allocation readings)
            }
            trace?.Invoke($"block{l}.out", x);
        }

        if (batch.LastRows is { } last) x = x.view(b * t, -1).index_select(0, last).view(b, 1, -1);
        var z = model.FinalNorm.Forward(x);
        trace?.Invoke("final_norm.out", z);
        // Tied head on the raw table (not scaled), then the tanh soft cap.
        var logits = Modules.SoftCap.Logits(Modules.Linear.Apply(z, model.EmbedTokens.Weight, null), Config.LogitsSoftCap);
        trace?.Invoke("logits", logits);
        PartDone?.Invoke("head");   // before the scope ends: every tensor of the pass is still held here

        for (int i = 0; i < b; i++) plan.State.Advance((int)plan.Slots[i], plan.Lengths[i]);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Convenience: plan, upload and run one forward with host token lists of any lengths.</summary>
    public Tensor Forward(IReadOnlyList<IReadOnlyList<long>> tokens, GriffinState state, long[] slots,
        LogitsSelection which = LogitsSelection.LastValid, Action<string, Tensor>? trace = null, bool rowExact = false)
    {
        using var buffer = new StepBuffer(Device);
        var plan = Plan(buffer, state, tokens, slots, which, rowExact);
        using var scope = NewDisposeScope();
        buffer.Upload();
        return Forward(plan, trace).MoveToOuterDisposeScope();
    }

    public IEnumerable<(string Name, Tensor Tensor)> NamedTensors() =>
        named_parameters().Select(p => (p.name, (Tensor)p.parameter));

    /// <summary>Total bytes of the parameters.</summary>
    public long ParameterBytes => named_parameters().Sum(p => p.parameter.numel() * p.parameter.ElementSize);
}
