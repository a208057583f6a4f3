using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>
/// Picks the next token for every row of a batch in one pass on the model's device, each row
/// with its own parameters held as [R, 1] tensors: logit_bias → penalties (presence/frequency on
/// generated tokens, OpenAI; repetition on prompt and generated, HF/vLLM) → greedy, or
/// temperature → top-k → top-p → min-p → an inverse-CDF draw with the row's own uniform number.
/// The uniform comes from the host (<see cref="SeededUniform"/>: a counter-based hash of the
/// row's seed and draw index), so the same seed gives the same tokens whatever else is in the
/// batch, on any device, across restarts — and no device-bound generator is needed (TorchSharp
/// has none for CUDA). Logprobs are those of the model's distribution (log-softmax of the raw
/// logits), as vLLM reports by default. Reads its inputs from the step buffer; returns one
/// packed float64 tensor for the step's single device→host copy.
/// </summary>
internal static partial class Sampler
{
    const int ParamCount = 7;   // temperature⁻¹, top-k, top-p, min-p, uniform, vocab limit, greedy (penalties: sparse edits)

    public static SamplerPlan Plan(StepBuffer buffer, IReadOnlyList<SamplingRow> rows, int vocab, int[]? logitRows = null)
    {
        int r = rows.Count;
        var ps = new double[r * ParamCount];
        var biasIndex = new List<long>(); var biasValue = new List<double>();
        var countIndex = new List<long>(); var countValue = new List<double>();
        var seenIndex = new List<long>(); var seenValue = new List<double>();
        var needs = SamplerNeeds.None;
        int maxTop = 0, maxTopK = 0;
        for (int i = 0; i < r; i++)
        {
            var row = rows[i];
            var p = row.Params;
            int o = i * ParamCount;
            bool greedy = p.IsGreedy, topK = !greedy && p.TopK > 0 && p.TopK < vocab;
            ps[o] = greedy ? 1 : 1.0 / p.Temperature;
            ps[o + 1] = topK ? p.TopK : 0;
            ps[o + 2] = p.TopP < 1 ? p.TopP : 2;   // 2: never drops a token
            ps[o + 3] = p.MinP;
            ps[o + 4] = row.Uniform;
            ps[o + 5] = row.SampleableVocab is { } limit && limit < vocab ? limit : vocab;
            ps[o + 6] = greedy ? 1 : 0;
            if (greedy) needs |= SamplerNeeds.Greedy;
            if (row.Logprobs) { needs |= SamplerNeeds.Logprobs; maxTop = Math.Max(maxTop, row.TopLogprobs); }
            if (!greedy)
            {
                needs |= SamplerNeeds.Sampled;
                if (topK) { needs |= SamplerNeeds.TopK; maxTopK = Math.Max(maxTopK, p.TopK); }
                if (p.TopP < 1) needs |= SamplerNeeds.TopP;
                if (p.MinP > 0) needs |= SamplerNeeds.MinP;
            }
            if (row.SampleableVocab < vocab) needs |= SamplerNeeds.VocabLimit;
            if (p.LogitBias is { Count: > 0 } bias)
                foreach (var (id, value) in bias)
                    if (id >= 0 && id < vocab) { biasIndex.Add((long)i * vocab + id); biasValue.Add(value); }
            if (row.Suppressed is { Count: > 0 } suppressed)
                foreach (var id in suppressed)
                    if (id >= 0 && id < vocab) { biasIndex.Add((long)i * vocab + id); biasValue.Add(double.NegativeInfinity); }
            // OpenAI's penalties: −(count · frequency + presence) on each id generated so far, and
            // Hugging Face's repetition factor on each id seen; both touch only those ids, so they
            // are written as sparse edits here instead of [R, V] passes on the device.
            if (p.PresencePenalty != 0 || p.FrequencyPenalty != 0)
                foreach (var g in row.Generated.Where(t => t >= 0 && t < vocab).CountBy(t => t))
                {
                    countIndex.Add((long)i * vocab + g.Key);
                    countValue.Add(-(g.Value * (double)p.FrequencyPenalty + p.PresencePenalty));
                }
            if (p.RepetitionPenalty != 1)
                foreach (var t in row.Prompt.Concat(row.Generated).Where(t => t >= 0 && t < vocab).Distinct())
                {
                    seenIndex.Add((long)i * vocab + t);
                    seenValue.Add(p.RepetitionPenalty);
                }
        }
        if (biasIndex.Count > 0) needs |= SamplerNeeds.Bias;
        if (rows.Any(row => row.Mask is not null)) needs |= SamplerNeeds.Masked;
        if (countIndex.Count > 0) needs |= SamplerNeeds.Counts;
        if (seenIndex.Count > 0) needs |= SamplerNeeds.Repetition;
        return new SamplerPlan
        {
            Masks = rows.Select(row => row.Mask).ToArray(),
            Rows = r, Vocab = vocab, MaxTop = maxTop, MaxTopK = maxTopK, Needs = needs,
            Params = buffer.Add(ps),
            BiasIndex = buffer.Add(biasIndex.ToArray()),
            BiasValue = buffer.Add(biasValue.ToArray()),
            CountIndex = buffer.Add(countIndex.ToArray()),
            CountValue = buffer.Add(countValue.ToArray()),
            SeenIndex = buffer.Add(seenIndex.ToArray()),
            SeenValue = buffer.Add(seenValue.ToArray()),
            LogitRows = logitRows is null ? default : buffer.Add(logitRows.Select(x => (long)x).ToArray()),
        };
    }

    /// <summary>
    /// Samples every row. <paramref name="logits"/>: [N, V] (or [N, 1, V]) float32; rows are
    /// picked by the plan's logit-row indices when given. Returns the packed result
    /// [R tokens, R logprobs, R·K top logprobs, R·K top ids] as float64 on the device.
    /// </summary>
    public static Tensor Sample(Tensor logits, SamplerPlan plan, StepBuffer buffer)
    {
        var (x, raw, p, owned) = Process(logits, plan, buffer);
        Tensor chosen;
        if (!plan.Has(SamplerNeeds.Sampled)) chosen = x.argmax(-1);               // every row greedy
        else
        {
            var greedy = plan.Has(SamplerNeeds.Greedy) ? x.argmax(-1) : null;    // before x changes in place
            var drawn = InverseCdf(Probabilities(x, plan, p, owned), p.narrow(1, 4, 1));
            chosen = greedy is null ? drawn : where(p.narrow(1, 6, 1).squeeze(1).gt(Scalars.Zero), greedy, drawn);
        }

        var parts = new List<Tensor> { chosen.to(ScalarType.Float64) };
        if (raw is not null)
        {
            parts.Add(raw.gather(1, chosen.unsqueeze(1)).squeeze(1).to(ScalarType.Float64));
            if (plan.MaxTop > 0)
            {
                var (values, indices) = raw.topk(plan.MaxTop);
                parts.Add(values.reshape(-1).to(ScalarType.Float64));
                parts.Add(indices.reshape(-1).to(ScalarType.Float64));
            }
        }
        return parts.Count == 1 ? parts[0] : cat(parts, 0);
    }

    /// <summary>The logits after the vocabulary limit, logit_bias and penalties ([R, V], a copy),
    /// the raw log-probabilities when asked, and the per-row parameters [R, 7].</summary>
    internal static (Tensor X, Tensor? Raw, Tensor Params, bool Owned) Process(Tensor logits, SamplerPlan plan, StepBuffer buffer)
    {
        int r = plan.Rows, v = plan.Vocab;
        var x = logits.reshape(-1, v);
        bool aliases = true;   // x still shares memory with the forward's output
        if (!plan.LogitRows.IsEmpty) { x = x.index_select(0, buffer.Long(plan.LogitRows, r)); aliases = false; }
        if (x.dtype != ScalarType.Float32) { x = x.to(ScalarType.Float32); aliases = false; }
        var raw = plan.Has(SamplerNeeds.Logprobs) ? x.log_softmax(-1) : null;
        // The forward's output must stay as it came (a failed pass re-samples it row by row): copy
        // only when a step below changes x in place — the common pass needs no [R, V] copy (and
        // masking, which comes first, builds its result in a buffer of its own).
        var p = buffer.Float(plan.Params, ScalarType.Float32, r, ParamCount);
        Tensor Col(int i) => p.narrow(1, i, 1);                                   // [R, 1]
        if (plan.Has(SamplerNeeds.Masked))
        {
            // An additive bias, 1 − 1/allowed: 0 where allowed, −inf where not (1/0 = +inf). Adding
            // it is one vectorised pass; masked_fill is a serial per-element branch on the CPU,
            // 6× slower on a mask as irregular as a grammar's (measured: 8.5 ms vs 1.5 ms at 16×256k).
            // Built in the bias's own memory, which then holds the masked logits: the step's copy.
            x = AllowedFlags(plan, v, x.device, buffer.Counter).to(ScalarType.Float32).reciprocal_().neg_().add_(Scalars.One, Scalars.One).add_(x, Scalars.One);
            aliases = false;
        }
        if (aliases && plan.Has(SamplerNeeds.InPlace)) x = x.clone();
        if (plan.Has(SamplerNeeds.VocabLimit))
            x.masked_fill_(arange(Scalars.Zero, Scalars.Of((long)v), Scalars.One, ScalarType.Float32, x.device).unsqueeze(0).ge(Col(5)), Scalars.NegativeInfinity);
        if (plan.Has(SamplerNeeds.Bias))
            x.view(-1).index_add_(0, buffer.Long(plan.BiasIndex, plan.BiasIndex.Length), buffer.Float(plan.BiasValue, ScalarType.Float32, plan.BiasValue.Length), Scalars.One);
        // The penalties touch only the ids a row has seen: gathered, changed and written back at
        // those positions (as dense [R, V] passes they cost 100–300 ms at 16 rows of 256k ids,
        // mostly in page faults on fresh [R, V] temporaries; `bench --suite sampler`).
        if (plan.Has(SamplerNeeds.Counts))
            x.view(-1).index_add_(0, buffer.Long(plan.CountIndex, plan.CountIndex.Length), buffer.Float(plan.CountValue, ScalarType.Float32, plan.CountValue.Length), Scalars.One);
        if (plan.Has(SamplerNeeds.Repetition))
        {
            var flat = x.view(-1);
            var at = buffer.Long(plan.SeenIndex, plan.SeenIndex.Length);
            var seen = flat.index_select(0, at);
            var rp = buffer.Float(plan.SeenValue, ScalarType.Float32, plan.SeenValue.Length);
            flat.index_copy_(0, at, where(seen.gt(Scalars.Zero), seen / rp, seen * rp));
        }
        return (x, raw, p, !aliases);
    }

    /// <summary>For each byte of a bit mask, its eight ids as flags (1 = allowed), little-endian.</summary>
    static readonly ulong[] Expanded = Enumerable.Range(0, 256).Select(b =>
    {
        ulong word = 0;
        for (int j = 0; j < 8; j++) if ((b >> j & 1) != 0) word |= 1UL << (8 * j);
        return word;
    }).ToArray();

    /// <summary>The host tensor the flags are written into, kept per engine thread and reused
    /// while the batch shape stays: a fresh 4 MiB array per step (16 rows of a 256k vocabulary)
    /// cost more in first-touch page faults and conversions than the masking itself.</summary>
    [ThreadStatic] static Tensor? _flags;

    /// <summary>
    /// [R, V] bool, true where a row may go (every id of a free row). Built on the host from the
    /// rows' bit masks (waited for here, after the forward they overlapped) and copied to the
    /// device: the one extra host→device copy of a step that has constrained rows.
    /// </summary>
    static Tensor AllowedFlags(SamplerPlan plan, int v, Device device, TransferCounter counter)
    {
        if (_flags is null || _flags.size(0) != plan.Rows || _flags.size(1) != v)
        {
            _flags?.Dispose();
            using var fresh = zeros([plan.Rows, v], ScalarType.Bool, CPU);
            _flags = fresh.alias().DetachFromDisposeScope();
        }
        var bytes = _flags.bytes;   // bool is one byte per element
        for (int i = 0; i < plan.Rows; i++)
        {
            var row = bytes.Slice(i * v, v);
            if (plan.Masks[i] is not { } task) { row.Fill(1); continue; }
            var bits = task.GetAwaiter().GetResult();
            // Eight ids at a time: each byte of the bit mask becomes eight flags.
            int full = v / 8;
            var eights = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(row[..(full * 8)]);
            for (int k = 0; k < full; k++) eights[k] = Expanded[(int)(bits[k >> 3] >> ((k & 7) * 8)) & 0xFF];
            for (int id = full * 8; id < v; id++) row[id] = (byte)((bits[id >> 6] >> (id & 63)) & 1);
        }
        counter.CountUpload();
        // A new handle on the same memory for the step's scope to dispose (the kept one stays);
        // on a GPU the copy up is synchronous from pageable memory, so the next step may rewrite it.
        return RecurrentGemma.Model.Modules.CpuPaths.On(device) ? _flags.alias() : _flags.to(device);
    }

    /// <summary>
    /// The inverse-CDF draw over non-negative weights [R, V] with each row's uniform u ∈ (0, 1]
    /// ([R, 1]): the first id whose cumulative weight reaches u · total. Two levels, so that no
    /// [R, V] cumulative sum is made (nor the [R, V] int64 count the draw once took: 32 MiB a
    /// step at 16 rows of 256k ids, slower than all the arithmetic): the vocabulary in equal
    /// blocks, the block whose running total reaches the target, then the id inside it (both
    /// found by binary search, as running totals never decrease). The target inside the block is
    /// the same share of the block's own running total, kept above zero, so an id of weight zero
    /// (masked, or beyond the vocabulary limit) is never drawn, whatever the rounding.
    /// </summary>
    internal static Tensor InverseCdf(Tensor weights, Tensor uniform)
    {
        long r = weights.size(0), v = weights.size(1), b = BlockSize(v), nb = v / b;
        var blocks = weights.reshape(r, nb, b);
        var sums = blocks.sum(-1);                                                // [R, nb]
        var running = sums.cumsum(-1);
        var target = running.narrow(1, nb - 1, 1) * uniform;                      // [R, 1]
        var block = searchsorted(running, target).clamp_max_(Scalars.Of(nb - 1)); // [R, 1]
        var before = running.gather(1, block.sub(Scalars.One).clamp_min_(Scalars.Zero)).masked_fill_(block.eq(Scalars.Zero), Scalars.Zero);
        var inside = blocks.gather(1, block.unsqueeze(-1).expand(r, 1, b)).squeeze(1).cumsum(-1);   // [R, b]
        var share = (target - before).div_(sums.gather(1, block)).clamp_(Scalars.Zero, Scalars.One)
            .mul_(inside.narrow(1, b - 1, 1)).clamp_min_(Scalars.Of((double)float.Epsilon));
        var id = searchsorted(inside, share).clamp_max_(Scalars.Of(b - 1));
        return block.mul_(Scalars.Of(b)).add_(id, Scalars.One).squeeze(1);
    }

    /// <summary>The largest divisor of the vocabulary up to 1024 (1000 for Gemma's 256 000 ids).</summary>
    static long BlockSize(long vocab)
    {
        for (long d = Math.Min(1024, vocab); d > 1; d--)
            if (vocab % d == 0) return d;
        return 1;
    }

    /// <summary>
    /// What a sampled row draws from ([R, V]): temperature, then top-k, top-p and min-p; the
    /// temperature is applied in place when <paramref name="owned"/> (x is already the step's own
    /// copy, as after masking), so no further [R, V] tensor is made for it. (Softmax, not exp(x − max):
    /// libtorch's CPU exp takes a slow path on every input that underflows — a masked −inf, or
    /// most of the vocabulary at a low temperature — measured 14–45 ms against 1.5–3 ms at 16×256k.)
    /// </summary>
    internal static Tensor Probabilities(Tensor processed, SamplerPlan plan, Tensor p, bool owned = false)
    {
        Tensor Col(int i) => p.narrow(1, i, 1);
        var y = owned ? processed.mul_(Col(0)) : processed * Col(0);              // ÷ temperature
        if (plan.Has(SamplerNeeds.TopK))
        {
            var k = Col(1);
            var kth = y.topk(plan.MaxTopK).values.gather(1, k.sub(Scalars.One).clamp_min(Scalars.Zero).to(ScalarType.Int64));
            y.masked_fill_(y.lt(kth.masked_fill_(k.eq(Scalars.Zero), Scalars.NegativeInfinity)), Scalars.NegativeInfinity);
        }
        if (plan.Has(SamplerNeeds.TopP))
        {
            if (RecurrentGemma.Model.Modules.CpuPaths.On(y)) TopPBySelection(y, Col(2));
            else TopPBySort(y, Col(2));
        }
        if (plan.Has(SamplerNeeds.MinP))
        {
            var probs = y.softmax(-1);
            y.masked_fill_(probs.lt(probs.max(-1, keepdim: true).values.mul_(Col(3))), Scalars.NegativeInfinity);
        }
        return y.softmax(-1);
    }

    /// <summary>One standalone pass (tests and tools): plan, one upload, sample, one download.</summary>
    internal static (int[] Tokens, TokenLogprob?[] Logprobs) SampleOnce(Tensor logits, IReadOnlyList<SamplingRow> rows, TransferCounter? counter = null)
    {
        using var buffer = new StepBuffer(logits.device, counter);
        var plan = Plan(buffer, rows, (int)logits.size(-1));
        using var scope = NewDisposeScope();
        buffer.Upload();
        return Unpack(buffer.Download(Sample(logits, plan, buffer)), plan, rows);
    }

    /// <summary>The distribution each row draws from (tests).</summary>
    internal static float[][] DistributionsOnce(Tensor logits, IReadOnlyList<SamplingRow> rows)
    {
        using var buffer = new StepBuffer(logits.device);
        var plan = Plan(buffer, rows, (int)logits.size(-1));
        using var scope = NewDisposeScope();
        buffer.Upload();
        var (x, _, p, owned) = Process(logits, plan, buffer);
        var probs = Probabilities(x, plan, p, owned).cpu();
        return Enumerable.Range(0, rows.Count).Select(i => probs[i].data<float>().ToArray()).ToArray();
    }

    /// <summary>The host side of the packed result.</summary>
    public static (int[] Tokens, TokenLogprob?[] Logprobs) Unpack(ReadOnlySpan<double> packed, SamplerPlan plan, IReadOnlyList<SamplingRow> rows)
    {
        int r = plan.Rows, k = plan.MaxTop;
        var tokens = new int[r];
        var logprobs = new TokenLogprob?[r];
        for (int i = 0; i < r; i++) tokens[i] = (int)packed[i];
        if (!plan.Has(SamplerNeeds.Logprobs)) return (tokens, logprobs);
        for (int i = 0; i < r; i++)
        {
            if (!rows[i].Logprobs) continue;
            var top = new List<(int, float)>();
            for (int j = 0; j < rows[i].TopLogprobs; j++)
                top.Add(((int)packed[2 * r + r * k + i * k + j], (float)packed[2 * r + i * k + j]));
            logprobs[i] = new TokenLogprob(tokens[i], (float)packed[r + i], top);
        }
        return (tokens, logprobs);
    }
}
