using RecurrentGemma.Model.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>
/// A Griffin language model: parameters only — every per-sequence value lives in a
/// <see cref="GriffinState"/> passed in, so one model serves any number of sequences.
///   x⁰ = E[tok] · bf16(√D);  xˡ⁺¹ = ResidualBlockₗ(xˡ);  logits = c·tanh(RMSNorm(xᴺ)·Eᵀ / c)
/// One entry point, <see cref="Forward(Tensor, GriffinState, long[], int[], LogitsSelection, Action{string, Tensor})"/>,
/// serves prefill (T tokens), chunked prefill (any chunk on top of any state) and batched
/// decode (T = 1): decode is just a chunk of one token, so the paths cannot disagree.
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

    /// <summary>
    /// Runs B sequences, each from its own slot, over a chunk of tokens.
    /// </summary>
    /// <param name="tokens">[B, T] int64 token ids; rows shorter than T are right-padded (see lengths).</param>
    /// <param name="state">the state pool; each row's slot advances by its length.</param>
    /// <param name="slots">distinct slot per row.</param>
    /// <param name="lengths">valid tokens per row (1…T); null means all T.</param>
    /// <param name="which">LastValid: logits [B, 1, V] of each row's last token; All: [B, T, V].</param>
    /// <param name="trace">optional observer of intermediate activations (tests, debugging).</param>
    /// <returns>float32 logits.</returns>
    public Tensor Forward(Tensor tokens, GriffinState state, long[] slots, int[]? lengths = null,
        LogitsSelection which = LogitsSelection.LastValid, Action<string, Tensor>? trace = null)
    {
        if (tokens.dim() != 2) throw new ArgumentException("tokens must be [B, T]", nameof(tokens));
        int b = (int)tokens.shape[0], t = (int)tokens.shape[1];
        if (slots.Length != b) throw new ArgumentException($"{slots.Length} slots for {b} rows", nameof(slots));
        if (t == 0) throw new ArgumentException("a chunk needs at least one token", nameof(tokens));
        lengths ??= Enumerable.Repeat(t, b).ToArray();
        if (lengths.Length != b || lengths.Any(l => l < 1 || l > t))
            throw new ArgumentException($"lengths must be {b} values in 1..{t}", nameof(lengths));
        if (slots.Distinct().Count() != b) throw new ArgumentException("slots must be distinct", nameof(slots));
        foreach (var s in slots) state.CheckSlot((int)s);
        if (state.Config != Config || state.DType != DType)
            throw new ArgumentException("state was created for another model shape or dtype", nameof(state));

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var batch = new ForwardBatch(state, slots, lengths, t, trace);

        var x = model.EmbedTokens.Lookup(tokens.to(Device)) * Config.EmbeddingScale;  // [B, T, D]
        trace?.Invoke("embed.out", x);
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            x = model.Layers[l].Forward(x, batch, l);
            trace?.Invoke($"block{l}.out", x);
        }

        if (which == LogitsSelection.LastValid)
        {
            var rows = tensor(lengths.Select((len, i) => (long)i * t + len - 1).ToArray(), device: Device);
            x = x.reshape(b * t, -1).index_select(0, rows).view(b, 1, -1);
        }
        var z = model.FinalNorm.Forward(x);
        trace?.Invoke("final_norm.out", z);
        // Tied head on the raw table (not scaled), then the tanh soft cap.
        var cap = Config.LogitsSoftCap;
        var head = model.EmbedTokens.Weight;
        var logits = (SplitGemv.Applies(z, head) ? SplitGemv.Linear(z, head, null) : nn.functional.linear(z, head)).to(ScalarType.Float32);
        if (cap > 0) logits = (logits / cap).tanh_().mul_(cap);
        trace?.Invoke("logits", logits);

        for (int i = 0; i < b; i++) state.Advance((int)slots[i], lengths[i]);
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Convenience overload: host token lists of any lengths, right-padded into one chunk.</summary>
    public Tensor Forward(IReadOnlyList<IReadOnlyList<long>> tokens, GriffinState state, long[] slots,
        LogitsSelection which = LogitsSelection.LastValid, Action<string, Tensor>? trace = null)
    {
        int t = tokens.Max(r => r.Count);
        var flat = new long[tokens.Count * t];
        for (int i = 0; i < tokens.Count; i++)
            for (int j = 0; j < tokens[i].Count; j++)
            {
                long id = tokens[i][j];
                if (id < 0 || id >= Config.VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");
                flat[i * t + j] = id;
            }
        using var ids = tensor(flat, [tokens.Count, t]);
        return Forward(ids, state, slots, tokens.Select(r => r.Count).ToArray(), which, trace);
    }

    public IEnumerable<(string Name, Tensor Tensor)> NamedTensors() =>
        named_parameters().Select(p => (p.name, (Tensor)p.parameter));

    /// <summary>Total bytes of the parameters.</summary>
    public long ParameterBytes => named_parameters().Sum(p => p.parameter.numel() * p.parameter.ElementSize);
}
