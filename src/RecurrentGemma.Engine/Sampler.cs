using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine;

/// <summary>Per-row input to the sampler: its parameters, random stream and token history.</summary>
internal sealed class SamplingRow(SamplingParams parameters, Generator rng, IReadOnlyList<int> prompt, IReadOnlyList<int> generated, int topLogprobs, bool logprobs, int? sampleableVocab = null)
{
    public int? SampleableVocab { get; } = sampleableVocab;
    public SamplingParams Params { get; } = parameters;
    public Generator Rng { get; } = rng;
    public IReadOnlyList<int> Prompt { get; } = prompt;
    public IReadOnlyList<int> Generated { get; } = generated;
    public bool Logprobs { get; } = logprobs;
    public int TopLogprobs { get; } = topLogprobs;
}

/// <summary>
/// Picks the next token for a batch of rows on the device, each with its own parameters:
/// logit_bias → penalties (presence/frequency on generated tokens, OpenAI; repetition on prompt
/// and generated, HF/vLLM) → greedy, or temperature → top-k → top-p → min-p → a draw.
/// The draw is an exponential race (argmax p / E, E ~ Exp(1)) from the row's own generator, so a
/// seeded row gets the same tokens whatever else is in the batch. Logprobs are those of the
/// model's distribution (log-softmax of the raw logits), as vLLM reports by default.
/// One device→host copy of the chosen ids per call (plus logprobs when asked).
/// </summary>
internal static class Sampler
{
    public static (int[] Tokens, TokenLogprob?[] Logprobs) Sample(Tensor logits, IReadOnlyList<SamplingRow> rows)
    {
        using var scope = NewDisposeScope();
        int b = rows.Count;
        var x = logits.reshape(b, -1).to(ScalarType.Float32);
        var logprobs = new TokenLogprob?[b];
        Tensor? raw = rows.Any(r => r.Logprobs) ? x.log_softmax(-1) : null;

        var processed = Process(x, rows);
        var chosen = torch.empty(b, ScalarType.Int64, x.device);
        var greedy = Enumerable.Range(0, b).Where(i => rows[i].Params.IsGreedy).ToArray();
        if (greedy.Length > 0)
        {
            var idx = tensor(greedy.Select(i => (long)i).ToArray(), device: x.device);
            chosen.index_copy_(0, idx, processed.index_select(0, idx).argmax(-1));
        }
        foreach (var i in Enumerable.Range(0, b).Where(i => !rows[i].Params.IsGreedy))
        {
            var probs = Probabilities(processed[i], rows[i].Params);
            // Exponential race: argmax p_j / E_j with E_j ~ Exp(1) draws token j with probability p_j.
            var race = probs / torch.empty_like(probs).exponential_(1.0, rows[i].Rng);
            chosen[i] = race.argmax();
        }

        var tokens = chosen.cpu().data<long>().ToArray().Select(t => (int)t).ToArray();
        if (raw is not null)
            for (int i = 0; i < b; i++)
            {
                if (!rows[i].Logprobs) continue;
                var row = raw[i];
                float lp = row[tokens[i]].item<float>();
                var top = new List<(int, float)>();
                if (rows[i].TopLogprobs > 0)
                {
                    var (values, indices) = row.topk(rows[i].TopLogprobs);
                    var v = values.cpu().data<float>().ToArray();
                    var ix = indices.cpu().data<long>().ToArray();
                    for (int k = 0; k < v.Length; k++) top.Add(((int)ix[k], v[k]));
                }
                logprobs[i] = new TokenLogprob(tokens[i], lp, top);
            }
        return (tokens, logprobs);
    }

    /// <summary>logit_bias and penalties applied to a copy of the logits [B, V].</summary>
    internal static Tensor Process(Tensor logits, IReadOnlyList<SamplingRow> rows)
    {
        long vocab = logits.shape[1];
        bool modifies = rows.Any(r => r.Params.LogitBias is { Count: > 0 } || r.Params.HasPenalties || r.SampleableVocab < vocab);
        if (!modifies) return logits.view(logits.shape);   // the common case: no [B, V] copy per step
        var x = logits.clone();
        for (int i = 0; i < rows.Count; i++)
        {
            var p = rows[i].Params;
            var row = x[i];
            if (rows[i].SampleableVocab is { } limit && limit < vocab)
                row.narrow(0, limit, vocab - limit).fill_(float.NegativeInfinity);
            if (p.LogitBias is { Count: > 0 } bias)
            {
                var ids = bias.Keys.Where(k => k >= 0 && k < vocab).ToArray();
                row.index_add_(0, tensor(ids.Select(k => (long)k).ToArray(), device: x.device),
                    tensor(ids.Select(k => bias[k]).ToArray(), device: x.device), 1);
            }
            if (!p.HasPenalties) continue;
            if ((p.PresencePenalty != 0 || p.FrequencyPenalty != 0) && rows[i].Generated.Count > 0)
            {
                var counts = zeros(vocab, ScalarType.Float32, x.device);
                counts.index_add_(0, tensor(rows[i].Generated.Select(t => (long)t).ToArray(), device: x.device), ones(rows[i].Generated.Count, device: x.device), 1);
                row.sub_(counts * p.FrequencyPenalty + (counts > 0).to(ScalarType.Float32) * p.PresencePenalty);
            }
            if (p.RepetitionPenalty != 1 && rows[i].Prompt.Count + rows[i].Generated.Count > 0)
            {
                var seen = zeros(vocab, ScalarType.Bool, x.device);
                seen.index_fill_(0, tensor(rows[i].Prompt.Concat(rows[i].Generated).Distinct().Select(t => (long)t).ToArray(), device: x.device), true);
                var penalised = where(row > 0, row / p.RepetitionPenalty, row * p.RepetitionPenalty);
                row.copy_(where(seen, penalised, row));
            }
        }
        return x;
    }

    /// <summary>The distribution a sampled (non-greedy) row draws from, after temperature and
    /// the top-k, top-p and min-p filters. [V] float32.</summary>
    internal static Tensor Probabilities(Tensor processedRow, SamplingParams p)
    {
        var y = processedRow / p.Temperature;
        long vocab = y.shape[0];
        if (p.TopK > 0 && p.TopK < vocab)
        {
            var kth = y.topk(p.TopK).values[p.TopK - 1];
            y = y.masked_fill(y < kth, float.NegativeInfinity);
        }
        if (p.TopP < 1)
        {
            var (sorted, order) = y.sort(descending: true);
            var probs = sorted.softmax(-1);
            // Drop a token when the tokens before it already reach top_p (the first always stays).
            var drop = (probs.cumsum(-1) - probs) >= p.TopP;
            y = y.masked_fill(zeros_like(drop).scatter_(0, order, drop), float.NegativeInfinity);
        }
        if (p.MinP > 0)
        {
            var probs = y.softmax(-1);
            y = y.masked_fill(probs < probs.max() * p.MinP, float.NegativeInfinity);
        }
        return y.softmax(-1);
    }
}
