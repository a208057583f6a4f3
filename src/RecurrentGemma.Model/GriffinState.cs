using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>
/// Fixed-size decode state for <see cref="Capacity"/> sequences ("slots"), preallocated once.
/// Per recurrent layer: the RG-LRU vector h [N, L] (always float32) and the last K−1 linear_x
/// outputs [N, K−1, L] (oldest first). Per attention layer: a W-slot ring of keys and values
/// [N, W, hd] (keys after RoPE; slot s holds the token at position τ with τ mod W = s).
/// Plus, per slot, how many tokens it has consumed (host side, so no device sync is needed).
/// Its size depends on the config only — never on how many tokens a sequence has seen.
/// </summary>
public sealed class GriffinState : IDisposable
{
    public GriffinConfig Config { get; }
    public int Capacity { get; }
    public ScalarType DType { get; }
    public Device Device { get; }

    /// <summary>Per layer; null where the layer is an attention layer.</summary>
    internal Tensor?[] Rnn { get; }
    internal Tensor?[] Conv { get; }
    /// <summary>Per layer; null where the layer is a recurrent layer.</summary>
    internal Tensor?[] Keys { get; }
    internal Tensor?[] Values { get; }
    /// <summary>Persistent views: h as [N, 1, H, L/H] blocks, the rings as [N·W, 1, hd] rows.</summary>
    internal Tensor?[] RnnBlocks { get; }
    internal Tensor?[] FlatKeys { get; }
    internal Tensor?[] FlatValues { get; }

    readonly long[] _tokenCount;

    public GriffinState(GriffinConfig config, int capacity, ScalarType dtype, Device device)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), "capacity must be positive");
        Config = config; Capacity = capacity; DType = dtype; Device = device;
        int n = config.NumHiddenLayers;
        Rnn = new Tensor?[n]; Conv = new Tensor?[n]; Keys = new Tensor?[n]; Values = new Tensor?[n];
        RnnBlocks = new Tensor?[n]; FlatKeys = new Tensor?[n]; FlatValues = new Tensor?[n];
        int heads = config.NumAttentionHeads;
        for (int l = 0; l < n; l++)
        {
            if (config.KindOf(l) == BlockKind.Recurrent)
            {
                Rnn[l] = zeros([capacity, config.LruWidth], ScalarType.Float32, device).DetachFromDisposeScope();
                Conv[l] = zeros([capacity, config.Conv1dWidth - 1, config.LruWidth], dtype, device).DetachFromDisposeScope();
                RnnBlocks[l] = Rnn[l]!.view(capacity, 1, heads, config.LruWidth / heads).DetachFromDisposeScope();
            }
            else
            {
                Keys[l] = zeros([capacity, config.AttentionWindowSize, config.HeadDim], dtype, device).DetachFromDisposeScope();
                Values[l] = zeros([capacity, config.AttentionWindowSize, config.HeadDim], dtype, device).DetachFromDisposeScope();
                FlatKeys[l] = Keys[l]!.view(-1, 1, config.HeadDim).DetachFromDisposeScope();
                FlatValues[l] = Values[l]!.view(-1, 1, config.HeadDim).DetachFromDisposeScope();
            }
        }
        _tokenCount = new long[capacity];
        // [0, 1, …, W−1, −1]: made here, on the device, with no host copy (a decode step compares it
        // with each row's visible ring keys; ForwardBatch).
        DecodeKeyOrder = arange(Scalars.Zero, Scalars.Of((long)config.AttentionWindowSize + 1), Scalars.One, ScalarType.Int64, device).DetachFromDisposeScope();
        using (var own = DecodeKeyOrder[config.AttentionWindowSize]) own.fill_(Scalars.Of(-1L));
    }

    /// <summary>
    /// The decode mask's key index, [W + 1] long: ring slot s as s, the step's own key as −1. A
    /// decode row sees ring slot s exactly when s &lt; min(tokens before it, W) (the ring holds the
    /// last W positions, all within the window of the new one), and its own key always.
    /// </summary>
    internal Tensor DecodeKeyOrder { get; }

    /// <summary>
    /// Bytes of one slot: n_rec·(4L + (K−1)·L·b) + n_att·2·W·hd·b with b the state dtype's size
    /// (docs/model.md, "Decode state"; the per-slot token counter is not counted there).
    /// </summary>
    /// <summary>The shape and type of each state tensor's row, in <see cref="AllTensors"/> order.</summary>
    public static List<(long[] Shape, ScalarType Type)> SlotLayout(GriffinConfig c, ScalarType dtype)
    {
        var layout = new List<(long[], ScalarType)>();
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            if (c.KindOf(l) == BlockKind.Recurrent)
            {
                layout.Add(([c.LruWidth], ScalarType.Float32));
                layout.Add(([c.Conv1dWidth - 1, c.LruWidth], dtype));
            }
            else
            {
                layout.Add(([c.AttentionWindowSize, c.HeadDim], dtype));
                layout.Add(([c.AttentionWindowSize, c.HeadDim], dtype));
            }
        }
        return layout;
    }

    public static long BytesPerSequence(GriffinConfig c, ScalarType dtype)
    {
        long b = ElementSize(dtype);
        long l = c.LruWidth;
        return c.RecurrentLayerCount * (4 * l + (c.Conv1dWidth - 1) * l * b)
             + c.AttentionLayerCount * 2L * c.AttentionWindowSize * c.HeadDim * b;
    }

    public long BytesPerSlot => BytesPerSequence(Config, DType);

    /// <summary>Bytes actually held by this state's tensors (all slots).</summary>
    public long AllocatedBytes => AllTensors().Sum(t => t.numel() * t.ElementSize);

    /// <summary>Tokens the slot has consumed: the position of its next token.</summary>
    public long TokenCount(int slot) => _tokenCount[slot];

    internal void Advance(int slot, long tokens) => _tokenCount[slot] += tokens;

    /// <summary>
    /// Declares how many tokens a slot holds, for tools that fill its tensors directly (a state
    /// restored from elsewhere, or a benchmark that needs position 4000 without prefilling it).
    /// </summary>
    public void SetTokenCount(int slot, long tokens)
    {
        CheckSlot(slot);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        _tokenCount[slot] = tokens;
    }

    /// <summary>
    /// Clears a slot to the all-zero empty state. Required before reuse: a used state fed
    /// position 0 is not clean (only the RG-LRU resets; conv and attention memory would leak).
    /// </summary>
    public void Reset(int slot)
    {
        CheckSlot(slot);
        using var scope = NewDisposeScope();   // indexing makes temporaries: gone with the scope
        foreach (var t in AllTensors()) { using var row = t[slot]; row.zero_(); }
        _tokenCount[slot] = 0;
    }

    /// <summary>Copies slot <paramref name="from"/> into slot <paramref name="to"/> (forking a sequence).</summary>
    public void CopySlot(int from, int to)
    {
        CheckSlot(from); CheckSlot(to);
        if (from == to) return;
        using var scope = NewDisposeScope();
        foreach (var t in AllTensors())
        {
            using var src = t[from];
            using var dst = t[to];
            dst.copy_(src);
        }
        _tokenCount[to] = _tokenCount[from];
    }

    /// <summary>Named per-layer tensors of one slot (views), for inspection and tests.</summary>
    /// <summary>
    /// A copy of one slot in host memory (every state tensor's row, and the token count): what a
    /// parked state becomes when it leaves the device pool. <see cref="ImportSlot"/> puts it back,
    /// into any slot.
    /// </summary>
    public SlotSnapshot ExportSlot(int slot)
    {
        CheckSlot(slot);
        using var scope = NewDisposeScope();   // every view and host copy made here goes with it
        var rows = new List<byte[]>();
        int i = 0;
        foreach (var t in AllTensors())
        {
            using var row = t[slot];
            // On a GPU the row comes down through a pinned staging buffer (a direct DMA, no
            // pageable bounce); on the CPU the row is already host memory.
            var staging = Staging(i++);
            if (staging is not null) staging.copy_(row);
            using var pageable = staging is null ? row.to(CPU).contiguous() : null;
            var bytes = (staging ?? pageable!).bytes;
            // A reused buffer: fresh memory costs its first touch (≈ 5 s/GiB on small VMs),
            // which a demotion on the engine thread would otherwise pay every time.
            var copy = SnapshotBuffers.Rent(bytes.Length);
            bytes.CopyTo(copy);
            rows.Add(copy);
        }
        return new SlotSnapshot(rows, _tokenCount[slot]);
    }

    public void ImportSlot(int slot, SlotSnapshot snapshot)
    {
        CheckSlot(slot);
        using var scope = NewDisposeScope();
        int i = 0;
        foreach (var t in AllTensors())
        {
            using var row = t[slot];
            var bytes = snapshot.Rows[i++];
            if (bytes.Length != row.numel() * row.ElementSize) throw new ArgumentException("the snapshot does not fit this state's layout");
            if (Modules.CpuPaths.On(row) && row.is_contiguous())
            {
                row.bytes = bytes;   // straight into the slot: one copy
                continue;
            }
            if (Staging(i - 1) is { } staging)
            {
                staging.bytes = bytes;   // up through the pinned buffer (see ExportSlot)
                row.copy_(staging);
                continue;
            }
            using var host = empty(row.shape, row.dtype, CPU);
            host.bytes = bytes;
            row.copy_(host);
        }
        _tokenCount[slot] = snapshot.TokenCount;
    }

    public Tensor RnnOf(int layer, int slot) => Rnn[layer]?[slot] ?? throw new ArgumentException($"layer {layer} is not recurrent");
    public Tensor ConvOf(int layer, int slot) => Conv[layer]?[slot] ?? throw new ArgumentException($"layer {layer} is not recurrent");
    public Tensor KeysOf(int layer, int slot) => Keys[layer]?[slot] ?? throw new ArgumentException($"layer {layer} is not an attention layer");
    public Tensor ValuesOf(int layer, int slot) => Values[layer]?[slot] ?? throw new ArgumentException($"layer {layer} is not an attention layer");

    /// <summary>Every state tensor (all slots), layer by layer.</summary>
    public IEnumerable<Tensor> AllTensors()
    {
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            if (Rnn[l] is { } r) yield return r;
            if (Conv[l] is { } c) yield return c;
            if (Keys[l] is { } k) yield return k;
            if (Values[l] is { } v) yield return v;
        }
    }

    internal void CheckSlot(int slot)
    {
        if ((uint)slot >= (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(slot), $"slot {slot} is outside 0..{Capacity - 1}");
    }

    static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        _ => throw new NotSupportedException($"state dtype {t}"),
    };

    List<Tensor>? _staging;

    /// <summary>A pinned host tensor shaped like one slot's row of state tensor <paramref name="index"/>,
    /// made once (CUDA only: pinning needs the CUDA runtime; null elsewhere).</summary>
    Tensor? Staging(int index)
    {
        if (Device.type != TorchSharp.DeviceType.CUDA) return null;
        if (_staging is null)
        {
            var list = new List<Tensor>();
            foreach (var t in AllTensors())
            {
                using var shaped = empty(t.shape.Skip(1).ToArray(), t.dtype, CPU);
                list.Add(shaped.pin_memory().DetachFromDisposeScope());
            }
            _staging = list;
        }
        return _staging[index];
    }

    public void Dispose()
    {
        foreach (var t in _staging ?? []) t.Dispose();
        DecodeKeyOrder.Dispose();
        foreach (var t in AllTensors().ToList()) t.Dispose();
        foreach (var v in RnnBlocks.Concat(FlatKeys).Concat(FlatValues)) v?.Dispose();
    }
}

/// <summary>One slot's state held in host memory as plain bytes, one array per state tensor in
/// <see cref="GriffinState.AllTensors"/> order (see <see cref="GriffinState.ExportSlot"/>). Plain
/// managed memory, not tensors: it holds no native handle and is exactly what the disk tier writes.
/// Disposing it hands its arrays back to <see cref="SnapshotBuffers"/> for the next snapshot: the
/// owner disposes it once it has no further use for the bytes (restored, written, or dropped).</summary>
public sealed class SlotSnapshot(IReadOnlyList<byte[]> rows, long tokenCount) : IDisposable
{
    int _disposed;
    public IReadOnlyList<byte[]> Rows { get; } = rows;
    public long TokenCount { get; } = tokenCount;
    public long Bytes { get; } = rows.Sum(r => (long)r.Length);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;   // each array goes back once only
        foreach (var r in Rows) SnapshotBuffers.Return(r);
    }
}
