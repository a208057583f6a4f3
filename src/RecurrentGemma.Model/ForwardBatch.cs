using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>Which positions get logits. The 256k-vocabulary head is the most expensive matrix,
/// so prompt positions skip it unless asked.</summary>
public enum LogitsSelection { LastValid, All }

/// <summary>
/// The host half of a forward pass over B sequences × T tokens: everything the layers share,
/// computed on the host and written into the step's <see cref="StepBuffer"/> — token ids, slots,
/// query and key positions, rotary tables, the RG-LRU's reset/padding factors, ring indices.
/// Nothing here touches the device; <see cref="ForwardBatch"/> cuts the segments out after the
/// step's single upload.
/// Shape legend: B sequences, T chunk length, W attention window, S = W + T keys (W only when
/// some sequence has history), hd head dim, R rotary dims.
/// </summary>
public sealed class ForwardPlan
{
    /// <summary>Added to invalid key positions so that "q − k ≤ W" fails: masks them out.</summary>
    internal const long Far = 1L << 40;

    internal GriffinState State { get; }
    internal StepBuffer Buffer { get; }
    public int B { get; }
    public int T { get; }
    internal int S { get; }
    internal long[] Slots { get; }
    /// <summary>
    /// The rows as runs of consecutive slots in row order (row r, r+1… on slot s, s+1…): a run's
    /// attention window is one view of the ring, read where it lies (<see cref="Modules.LocalAttentionBlock"/>).
    /// </summary>
    internal IReadOnlyList<SlotRun> SlotRuns { get; }
    internal int[] Lengths { get; }
    internal bool Ragged { get; }
    internal bool HasHistory { get; }
    /// <summary>Σ over rows of the ring keys each row can see before this chunk (at most W each): host metadata.</summary>
    internal long VisibleRingKeys { get; }
    /// <summary>Some token starts a sequence or is padding: the RG-LRU needs its factors.</summary>
    internal bool NeedsGateFactors { get; }
    internal LogitsSelection Which { get; }

    /// <summary>
    /// Set for a row-exact forward (<see cref="RowExactForward"/>): each row's own plan, built as
    /// it would be alone; this plan then holds only the rows' common facts, no segments.
    /// </summary>
    internal ForwardPlan[]? Rows { get; }

    /// <summary>A row-exact forward's plan: one plan of one row per sequence, in the same buffer.</summary>
    internal ForwardPlan(GriffinState state, StepBuffer buffer, IReadOnlyList<IReadOnlyList<long>> tokens, long[] slots, float[] invFreq)
    {
        State = state; Buffer = buffer; Slots = slots; Which = LogitsSelection.LastValid;
        B = slots.Length;
        Lengths = tokens.Select(r => r.Count).ToArray();
        T = Lengths.Max();
        SlotRuns = SlotRun.Of(slots);
        Rows = tokens.Select((row, i) => new ForwardPlan(state, buffer, [row], [slots[i]], LogitsSelection.LastValid, invFreq)).ToArray();
    }

    internal StepBuffer.Segment Tokens, SlotIndex, QueryPositions, KeyPositions, VisibleKeys, GateFactors, ConvRows, RingDest, RingSrc, LastRows, RopeCos, RopeSin;

    /// <summary>
    /// A decode step over rows with history: its mask needs only each row's count of visible ring
    /// keys (<see cref="GriffinState.DecodeKeyOrder"/>), not every key's position — B values
    /// uploaded instead of B·(W + 1), and no per-slot work on the host (at 256 rows of the 2B
    /// shape, 4 MiB and most of the step's plan).
    /// </summary>
    internal bool DecodeMask { get; }

    internal ForwardPlan(GriffinState state, StepBuffer buffer, IReadOnlyList<IReadOnlyList<long>> tokens, long[] slots, LogitsSelection which, float[] invFreq)
    {
        State = state; Buffer = buffer; Slots = slots; Which = which;
        var c = state.Config;
        B = slots.Length;
        SlotRuns = SlotRun.Of(slots);
        T = tokens.Max(r => r.Count);
        Lengths = tokens.Select(r => r.Count).ToArray();
        long w = c.AttentionWindowSize;
        var start = slots.Select(s => state.TokenCount((int)s)).ToArray();
        Ragged = Lengths.Any(l => l != T);
        HasHistory = start.Any(s => s > 0);
        VisibleRingKeys = start.Sum(s => Math.Min(s, w));
        NeedsGateFactors = Ragged || start.Any(s => s == 0);
        S = (HasHistory ? (int)w : 0) + T;
        int b = B, t = T;
        // Every segment below, sized up front: spans into the buffer stay valid while we fill them.
        buffer.EnsureRoom(b * t * (6 + 2 * c.HeadDim) + b * S + b * (c.Conv1dWidth + 2) + 2 * b * Math.Min(t, (int)w));

        Tokens = buffer.Add(b * t, out var ids);
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) ids[i * t + j] = j < Lengths[i] ? tokens[i][j] : 0;
        SlotIndex = buffer.Add(slots);

        QueryPositions = buffer.Add(b * t, out var q);
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++) q[i * t + j] = start[i] + j;
        DecodeMask = t == 1 && HasHistory;
        if (DecodeMask)
        {
            VisibleKeys = buffer.Add(b, out var visible);
            for (int i = 0; i < b; i++) visible[i] = Math.Min(start[i], w);
        }
        else
        {
            KeyPositions = buffer.Add(b * S, out var k);
            for (int i = 0; i < b; i++)
            {
                int offset = HasHistory ? (int)w : 0;
                if (HasHistory) RingPositions(k.Slice(i * S, (int)w), start[i], w);
                for (int j = 0; j < t; j++) k[i * S + offset + j] = j < Lengths[i] ? start[i] + j : -Far;
            }
        }

        if (NeedsGateFactors)
        {
            // Per token: keep (a and the input scale survive), pad (a := 1), reset (input scale := 1).
            GateFactors = buffer.Add(3 * b * t, out var g);
            for (int i = 0; i < b; i++)
                for (int j = 0; j < t; j++)
                {
                    bool valid = j < Lengths[i], reset = valid && start[i] + j == 0;
                    g[i * t + j] = valid && !reset ? 1 : 0;
                    g[b * t + i * t + j] = valid ? 0 : 1;
                    g[2 * b * t + i * t + j] = reset ? 1 : 0;
                }
        }

        if (Ragged)
        {
            // Row b's conv history ends at its last valid token: window rows len_b … len_b+K−2.
            int k1 = c.Conv1dWidth - 1;
            ConvRows = buffer.Add(b * k1, out var rows);
            for (int i = 0; i < b; i++)
                for (int j = 0; j < k1; j++) rows[i * k1 + j] = Lengths[i] + j;
        }

        if (t > 1)
        {
            // New keys enter the ring: the last min(len, W) valid tokens of each sequence.
            var dest = new List<long>();
            var src = new List<long>();
            for (int i = 0; i < b; i++)
            {
                int n = (int)Math.Min(Lengths[i], w);
                for (int j = Lengths[i] - n; j < Lengths[i]; j++)
                {
                    dest.Add(slots[i] * w + (start[i] + j) % w);
                    src.Add((long)i * t + j);
                }
            }
            RingDest = buffer.Add(dest.ToArray());
            RingSrc = buffer.Add(src.ToArray());
            if (which == LogitsSelection.LastValid)
                LastRows = buffer.Add(Enumerable.Range(0, b).Select(i => (long)i * t + Lengths[i] - 1).ToArray());
        }
        else RingDest = buffer.Add(Enumerable.Range(0, b).Select(i => slots[i] * w + start[i] % w).ToArray());

        // Rotary tables for the whole head: x·C + rot(x)·S, C = [cos, cos, 1…], S = [−sin, sin, 0…],
        // angles p·ω_i in float32 as the reference computes them (ω read from the device once).
        int hd = c.HeadDim, half = c.RotaryDim / 2;
        RopeCos = buffer.Add(b * t * hd, out var cos);
        RopeSin = buffer.Add(b * t * hd, out var sin);
        for (int r = 0; r < b * t; r++)
        {
            float p = (float)q[r];
            int o = r * hd;
            for (int i = 0; i < half; i++)
            {
                float angle = p * invFreq[i];
                var (sv, cv) = MathF.SinCos(angle);   // both in one call: a third less host time than two
                cos[o + i] = cv; cos[o + half + i] = cv;
                sin[o + i] = -sv; sin[o + half + i] = sv;
            }
            for (int i = 2 * half; i < hd; i++) { cos[o + i] = 1; sin[o + i] = 0; }
        }
    }

    /// <summary>
    /// The position each ring slot holds before this chunk: slot s holds the newest τ &lt; start with
    /// τ ≡ s (mod W), none (−Far) where that τ &lt; 0. With m = (start − 1) mod W that is
    /// start − 1 − m + s for s ≤ m and W less beyond — written without a modulo per slot: a chunk
    /// over rows with history fills W slots for every row (2048 on the real models; a decode step
    /// needs only a count per row, <see cref="DecodeMask"/>).
    /// </summary>
    public static void RingPositions(Span<double> slots, long start, long w)
    {
        long last = start - 1;
        if (last < 0) { slots.Fill(-Far); return; }
        long m = last % w, first = last - m;
        for (int s = 0; s <= m; s++) slots[s] = first + s;
        long older = first - w;
        for (int s = (int)m + 1; s < w; s++) slots[s] = older + s >= 0 ? older + s : -Far;
    }
}

/// <summary>
/// The device half: the plan's segments as typed tensors, built once per forward after the
/// upload and shared by every layer. Created inside the forward's dispose scope, which frees them.
/// </summary>
internal sealed class ForwardBatch
{
    public ForwardPlan Plan { get; }
    public int B => Plan.B;
    public int T => Plan.T;
    public bool Ragged => Plan.Ragged;
    public bool HasHistory => Plan.HasHistory;
    public GriffinState State => Plan.State;
    public Action<string, Tensor>? Trace { get; }

    public Tensor Tokens { get; }          // [B·T] long
    public Tensor SlotIndex { get; }       // [B] long
    public Tensor MaskBias { get; }        // [B, T·H, S] float32: 0 where a query may attend, a huge negative elsewhere
    public Tensor? GateKeep { get; }       // [B, T, 1, 1] float32 (null: every token keeps its gates)
    public Tensor? GatePad { get; }
    public Tensor? GateReset { get; }
    public Tensor? ConvRows { get; }       // [B, K−1, L] long, ragged chunks only
    public Tensor RingDest { get; }        // [n] long, flat (slot·W + pos mod W) rows receiving new keys
    public Tensor? RingSrc { get; }        // [n] long, flat (b·T + t) rows of the chunk's keys; null: all rows, in order
    public Tensor? LastRows { get; }       // [B] long, flat rows of each sequence's last valid token
    public Tensor RopeCos { get; }         // [B, T, 1, hd] model dtype
    public Tensor RopeSin { get; }

    /// <summary>The reference's mask value (finite, so a fully masked padded row stays finite).</summary>
    internal const float MaskValue = -2.3819763e38f;

    public ForwardBatch(ForwardPlan plan, Action<string, Tensor>? trace)
    {
        Plan = plan; Trace = trace;
        var buf = plan.Buffer;
        var c = plan.State.Config;
        var dtype = plan.State.DType;
        int b = plan.B, t = plan.T, s = plan.S, heads = c.NumAttentionHeads, hd = c.HeadDim;
        Tokens = buf.Long(plan.Tokens);
        SlotIndex = buf.Long(plan.SlotIndex);

        // A query sees itself and the W previous tokens: W + 1 keys (q − k ≤ W), never the future.
        using (var scope = NewDisposeScope())
        {
            Tensor allowed;
            if (plan.DecodeMask)
                allowed = plan.State.DecodeKeyOrder.view(1, 1, s).lt(buf.Long(plan.VisibleKeys, b, 1, 1));   // [B, 1, W + 1]
            else
            {
                var q = buf.Long(plan.QueryPositions, b, t, 1);
                var k = buf.Long(plan.KeyPositions, b, 1, s);
                allowed = k.le(q).logical_and_((q - k).le_(Scalars.Of((long)c.AttentionWindowSize)));
            }
            var bias = allowed.logical_not_().to(ScalarType.Float32).mul_(Scalars.Of((double)MaskValue));
            MaskBias = bias.unsqueeze(2).expand(b, t, heads, s).reshape(b, (long)t * heads, s).MoveToOuterDisposeScope();
        }
        if (plan.NeedsGateFactors)
        {
            var g = buf.Float(plan.GateFactors, ScalarType.Float32, 3, b, t, 1, 1);   // broadcast over [B, T, H, L/H]
            GateKeep = g[0]; GatePad = g[1]; GateReset = g[2];
        }
        if (plan.Ragged) ConvRows = buf.Long(plan.ConvRows, b, c.Conv1dWidth - 1, 1).expand(-1, -1, c.LruWidth);
        RingDest = buf.Long(plan.RingDest);
        if (t > 1)
        {
            RingSrc = buf.Long(plan.RingSrc);
            if (plan.Which == LogitsSelection.LastValid) LastRows = buf.Long(plan.LastRows);
        }
        RopeCos = buf.Float(plan.RopeCos, dtype, b, t, 1, hd);
        RopeSin = buf.Float(plan.RopeSin, dtype, b, t, 1, hd);
    }
}
