using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>Which positions get logits. The 256k-vocabulary head is the most expensive matrix,
/// so prompt positions skip it unless asked.</summary>
public enum LogitsSelection { LastValid, All }

/// <summary>
/// Everything a forward pass over B sequences × T tokens shares across layers, built once:
/// slot indices into the state, absolute positions, the valid-token mask for ragged chunks
/// (right padding), the positions held in each attention ring, and where new keys land.
/// Shape legend: B sequences, T chunk length, W attention window, S = W + T keys.
/// Created inside the forward pass's dispose scope, which frees its tensors.
/// </summary>
internal sealed class ForwardBatch
{
    /// <summary>Added to invalid key positions so that "q − k ≤ W" fails: masks them out.</summary>
    const long Far = 1L << 40;

    public int B { get; }
    public int T { get; }
    public long[] Slots { get; }
    public long[] Start { get; }
    public int[] Lengths { get; }
    public bool Ragged { get; }
    /// <summary>True when some sequence already holds tokens, so its cache takes part.</summary>
    public bool HasHistory { get; }
    public GriffinState State { get; }
    public Action<string, Tensor>? Trace { get; }

    public Tensor SlotIndex { get; }      // [B] long
    public Tensor Positions { get; }      // [B, T] long, segment positions (start + t)
    public Tensor? Valid { get; }         // [B, T] bool, null unless ragged
    public Tensor AttentionMask { get; }  // [B, T, 1, S] bool, true = may attend
    public Tensor RingDest { get; }       // [n] long, flat (slot·W + pos mod W) rows receiving new keys
    public Tensor RingSrc { get; }        // [n] long, flat (b·T + t) rows of the chunk's keys
    public Tensor Cos { get; }            // [B, T, 1, R/2] model dtype
    public Tensor Sin { get; }

    public ForwardBatch(GriffinState state, long[] slots, int[] lengths, int t, Action<string, Tensor>? trace)
    {
        State = state; Slots = slots; Lengths = lengths; T = t; B = slots.Length; Trace = trace;
        var c = state.Config;
        var dev = state.Device;
        long w = c.AttentionWindowSize;
        Start = slots.Select(s => state.TokenCount((int)s)).ToArray();
        Ragged = lengths.Any(l => l != t);
        HasHistory = Start.Any(s => s > 0);

        SlotIndex = tensor(slots, device: dev);

        var pos = new long[B * T];
        var keyPos = new long[B * T];
        var valid = new bool[B * T];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++)
            {
                pos[b * T + i] = Start[b] + i;
                valid[b * T + i] = i < lengths[b];
                keyPos[b * T + i] = i < lengths[b] ? Start[b] + i : -Far;
            }
        Positions = tensor(pos, [B, T], device: dev);
        Valid = Ragged ? tensor(valid, [B, T], device: dev) : null;

        // Key positions: the cached ring (when any history exists), then the chunk itself.
        var keyPositions = tensor(keyPos, [B, T], device: dev);
        if (HasHistory)
        {
            var cached = new long[B * w];
            for (int b = 0; b < B; b++)
                for (long s = 0; s < w; s++)
                {
                    // Slot s holds the newest τ < start with τ ≡ s (mod W); none if that τ < 0.
                    long last = Start[b] - 1;
                    long tau = last - ((last - s) % w + w) % w;
                    cached[b * w + s] = tau >= 0 ? tau : -Far;
                }
            keyPositions = cat([tensor(cached, [B, w], device: dev), keyPositions], 1);
        }
        // A query sees itself and the W previous tokens: W + 1 keys (q − k ≤ W), never the future.
        var q = Positions.unsqueeze(2);            // [B, T, 1]
        var k = keyPositions.unsqueeze(1);         // [B, 1, S]
        AttentionMask = ((k <= q) & ((q - k) <= w)).unsqueeze(2);

        // New keys enter the ring: the last min(len, W) valid tokens of each sequence.
        var dest = new List<long>();
        var src = new List<long>();
        for (int b = 0; b < B; b++)
        {
            int n = (int)Math.Min(lengths[b], w);
            for (int i = lengths[b] - n; i < lengths[b]; i++)
            {
                dest.Add(slots[b] * w + (Start[b] + i) % w);
                src.Add((long)b * T + i);
            }
        }
        RingDest = tensor(dest.ToArray(), device: dev);
        RingSrc = tensor(src.ToArray(), device: dev);

        (Cos, Sin) = Rotary(c, Positions, state.DType);
    }

    /// <summary>
    /// RoPE tables for the rotated half of each head: ω_i = θ^(−2i/R), angle = p·ω_i, computed in
    /// float32 (as the reference) and cast to the activation dtype.
    /// </summary>
    static (Tensor Cos, Tensor Sin) Rotary(GriffinConfig c, Tensor positions, ScalarType dtype)
    {
        int half = c.RotaryDim / 2;
        var exponents = arange(half, ScalarType.Float32, positions.device) * (2.0f / c.RotaryDim);
        var invFreq = 1.0f / pow((float)c.RopeTheta, exponents);                  // [R/2]
        var angle = positions.to(ScalarType.Float32).unsqueeze(-1) * invFreq;       // [B, T, R/2]
        return (angle.cos().to(dtype).unsqueeze(2), angle.sin().to(dtype).unsqueeze(2));
    }
}
