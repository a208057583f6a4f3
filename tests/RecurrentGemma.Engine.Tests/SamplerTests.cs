using static TorchSharp.torch;

namespace RecurrentGemma.Engine.Tests;

/// <summary>The sampler's distributions against values computed by hand (in double precision).</summary>
public class SamplerTests
{
    static readonly float[] Logits = [2.0f, 1.0f, 0.5f, -1.0f, 0.0f];

    static double[] Softmax(IEnumerable<double> xs)
    {
        var a = xs.ToArray();
        double m = a.Where(double.IsFinite).Max();
        var e = a.Select(x => double.IsFinite(x) ? Math.Exp(x - m) : 0).ToArray();
        double s = e.Sum();
        return e.Select(x => x / s).ToArray();
    }

    static float[] Distribution(SamplingParams p, int[]? prompt = null, int[]? generated = null, float[]? values = null)
    {
        using var logits = tensor(values ?? Logits).unsqueeze(0);
        var row = new SamplingRow(p, 0.5, prompt ?? [], generated ?? [], 0, false);
        return Sampler.DistributionsOnce(logits, [row])[0];
    }

    static void Near(double[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-6, $"[{i}] expected {expected[i]}, got {actual[i]}");
    }

    [Fact]
    public void Temperature_divides_the_logits() =>
        Near(Softmax(Logits.Select(x => x / 0.5)), Distribution(new SamplingParams { Temperature = 0.5f }));

    [Fact]
    public void Top_k_keeps_the_k_largest() =>
        Near(Softmax([2.0, 1.0, double.NegativeInfinity, double.NegativeInfinity, double.NegativeInfinity]), Distribution(new SamplingParams { TopK = 2 }));

    [Fact]
    public void Top_p_keeps_the_smallest_set_reaching_p()
    {
        var p = Softmax(Logits.Select(x => (double)x));   // [0.563, 0.207, 0.126, 0.028, 0.076]
        // Sorted: 0.563, then 0.207 (cumulative 0.770): top_p 0.7 keeps two tokens, 0.8 keeps three.
        Assert.True(p[0] < 0.7 && p[0] + p[1] >= 0.7 && p[0] + p[1] < 0.8 && p[0] + p[1] + p[2] >= 0.8);
        Near(Softmax([2.0, 1.0, double.NegativeInfinity, double.NegativeInfinity, double.NegativeInfinity]), Distribution(new SamplingParams { TopP = 0.7f }));
        Near(Softmax([2.0, 1.0, 0.5, double.NegativeInfinity, double.NegativeInfinity]), Distribution(new SamplingParams { TopP = 0.8f }));
        // A tiny top_p still keeps the most likely token.
        Near([1, 0, 0, 0, 0], Distribution(new SamplingParams { TopP = 0.01f }));
    }

    [Fact]
    public void Min_p_drops_tokens_below_a_fraction_of_the_most_likely()
    {
        var p = Softmax(Logits.Select(x => (double)x));
        var keep = p.Select(x => x >= 0.3 * p.Max()).ToArray();   // keeps 2.0 and 1.0 (0.207/0.563 = 0.37)
        Near(Softmax(Logits.Select((x, i) => keep[i] ? x : double.NegativeInfinity)), Distribution(new SamplingParams { MinP = 0.3f }));
    }

    [Fact]
    public void Min_p_keeps_a_token_exactly_at_the_threshold_and_min_p_one_keeps_the_top()
    {
        // Tied logits give exactly equal probabilities: with min_p = 1 the threshold is exactly
        // the top probability, so every tied top token stays (p >= threshold, not p > threshold).
        Near([0.5, 0.5, 0, 0], Distribution(new SamplingParams { MinP = 1f }, values: [1f, 1f, 0f, -3f]));
        // min_p = 1 keeps the single most likely token, never nothing.
        Near([1, 0, 0, 0, 0], Distribution(new SamplingParams { MinP = 1f }));
        // With sampling on top, the kept token is the one drawn.
        using var logits = tensor(Logits).unsqueeze(0);
        var row = new SamplingRow(new SamplingParams { MinP = 1f, Temperature = 1.5f }, 0.999, [], [], 0, false);
        Assert.Equal(0, Sampler.SampleOnce(logits, [row]).Tokens[0]);
    }

    [Fact]
    public void Presence_and_frequency_penalties_follow_openai()
    {
        // Generated [0, 0, 2]: token 0 twice, token 2 once.
        double[] expected = [2.0 - 0.5 - 2 * 0.25, 1.0, 0.5 - 0.5 - 0.25, -1.0, 0.0];
        Near(Softmax(expected), Distribution(new SamplingParams { PresencePenalty = 0.5f, FrequencyPenalty = 0.25f }, generated: [0, 0, 2]));
    }

    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens()
    {
        double[] expected = [2.0, 1.0 / 2, 0.5, -1.0 * 2, 0.0];   // seen: 1 (prompt), 3 (generated)
        Near(Softmax(expected), Distribution(new SamplingParams { RepetitionPenalty = 2f }, prompt: [1], generated: [3]));
    }

    [Fact]
    public void Penalties_of_rows_in_one_batch_each_touch_only_their_own_ids()
    {
        // Row 0: presence + frequency, token 0 generated three times, 4 once; row 1: repetition on
        // its prompt (1) and generated (3, twice) ids, and the same frequency setting with nothing
        // generated that row 0's history could leak into.
        using var logits = tensor(new[] { 2.0f, 1.0f, 0.5f, -1.0f, 0.0f, 2.0f, 1.0f, 0.5f, -1.0f, 0.0f }).reshape(2, 5);
        var rows = new List<SamplingRow>
        {
            new(new SamplingParams { PresencePenalty = 0.5f, FrequencyPenalty = 0.25f }, 0.5, [3], [0, 4, 0, 0], 0, false),
            new(new SamplingParams { RepetitionPenalty = 2f, FrequencyPenalty = 0.25f }, 0.5, [1], [], 0, false),
            new(new SamplingParams { RepetitionPenalty = 2f }, 0.5, [1], [3, 3], 0, false),
        };
        using var three = cat([logits, logits.narrow(0, 0, 1)], 0);
        var d = Sampler.DistributionsOnce(three, rows);
        Near(Softmax([2.0 - 0.5 - 3 * 0.25, 1.0, 0.5, -1.0, 0.0 - 0.5 - 0.25]), d[0]);
        Near(Softmax([2.0, 1.0 / 2, 0.5, -1.0, 0.0]), d[1]);
        Near(Softmax([2.0, 1.0 / 2, 0.5, -1.0 * 2, 0.0]), d[2]);
    }

    [Theory]
    [InlineData(300, 21)]
    [InlineData(300, 22)]
    [InlineData(1000, 23)]
    [InlineData(4096, 24)]
    [InlineData(20000, 25)]
    [InlineData(65536, 26)]
    public void Top_p_by_selection_keeps_what_sorting_the_row_keeps(int vocab, int seed)
    {
        // Rows from peaked to flat, each with its own top_p (0.05 … 0.95), one id masked by an
        // earlier step: the threshold selection must keep exactly the ids the sort keeps.
        var random = new Random(seed);
        const int rows = 24;
        var values = new float[rows * vocab];
        for (int r = 0; r < rows; r++)
        {
            double scale = 0.2 + r * 0.4;
            for (int v = 0; v < vocab; v++)
                values[r * vocab + v] = (float)(scale * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        }
        values[5 * vocab + 7] = float.NegativeInfinity;
        using var y = tensor(values).reshape(rows, vocab);
        using var p = tensor(Enumerable.Range(0, rows).Select(r => (float)(0.05 + 0.9 * r / (rows - 1.0))).ToArray()).unsqueeze(1);
        using var sorted = y.clone();
        using var selected = y.clone();
        Sampler.TopPBySort(sorted, p);
        Sampler.TopPBySelection(selected, p);
        using var kept = sorted.isfinite();
        Assert.True(kept.sum().item<long>() > rows, "top-p dropped everything but one id per row: the case is too easy");
        Assert.True(kept.eq(selected.isfinite()).all().item<bool>(), $"vocabulary {vocab}: the selection kept other ids than sorting");
        Assert.True(sorted.masked_fill(kept.logical_not(), 0).eq(selected.masked_fill(kept.logical_not(), 0)).all().item<bool>(), "a kept logit changed");
    }

    [Fact]
    public void Logit_bias_is_added_before_everything_else()
    {
        double[] expected = [2.0, 1.0, 0.5 + 5, -1.0, 0.0 - 100];
        Near(Softmax(expected), Distribution(new SamplingParams { LogitBias = new Dictionary<int, float> { [2] = 5, [4] = -100 } }));
    }

    [Fact]
    public void Draws_follow_the_distribution()
    {
        // 4000 draws from softmax([2, 1, 0.5, -1, 0]) at temperature 1: frequencies near the probabilities.
        var p = Softmax(Logits.Select(x => (double)x));
        var counts = new int[5];
        var rows = Enumerable.Range(0, 4000).Select(i => new SamplingRow(new SamplingParams(), SeededUniform.Draw(42, i), [], [], 0, false)).ToList();
        using var logits = tensor(Logits).unsqueeze(0).expand(4000, -1).contiguous();
        foreach (var t in Sampler.SampleOnce(logits, rows).Tokens) counts[t]++;
        for (int i = 0; i < 5; i++) Assert.True(Math.Abs(counts[i] / 4000.0 - p[i]) < 0.03, $"token {i}: {counts[i] / 4000.0:F3} vs {p[i]:F3}");
    }

    [Fact]
    public void Greedy_takes_the_argmax_after_bias_and_penalties()
    {
        using var logits = tensor(Logits).unsqueeze(0);
        Assert.Equal(0, Sampler.SampleOnce(logits, [new SamplingRow(SamplingParams.Greedy, 0.5, [], [], 0, false)]).Tokens[0]);
        var biased = SamplingParams.Greedy with { LogitBias = new Dictionary<int, float> { [3] = 10 } };
        Assert.Equal(3, Sampler.SampleOnce(logits, [new SamplingRow(biased, 0.5, [], [], 0, false)]).Tokens[0]);
    }
}

public class SampleableVocabTests
{
    [Fact]
    public void Ids_beyond_the_sampleable_vocabulary_are_never_chosen()
    {
        // The largest logit sits at id 4, past a limit of 3: greedy and sampling must avoid it.
        using var logits = TorchSharp.torch.tensor(new float[] { 0f, 1f, 0.5f, -1f, 50f }).unsqueeze(0);
        Assert.Equal(1, Sampler.SampleOnce(logits, [new SamplingRow(SamplingParams.Greedy, 0.5, [], [], 0, false, 3)]).Tokens[0]);
        var rows = Enumerable.Range(0, 200).Select(i => new SamplingRow(new SamplingParams { Temperature = 2 }, SeededUniform.Draw(9, i), [], [], 0, false, 3)).ToList();
        using var many = logits.expand(200, -1).contiguous();
        Assert.All(Sampler.SampleOnce(many, rows).Tokens, t => Assert.InRange(t, 0, 2));
    }
}

/// <summary>
/// The two-level inverse-CDF draw against the definition computed in double precision on the
/// host: the id taken is the first whose cumulative weight reaches u · total (up to float
/// rounding at the boundary), and an id of weight zero is never taken, whatever u.
/// </summary>
public class InverseCdfTests
{
    static long Draw(float[] weights, double u)
    {
        using var scope = NewDisposeScope();
        using var w = tensor(weights).unsqueeze(0);
        using var uniform = tensor(new[] { (float)u }).unsqueeze(0);
        return Sampler.InverseCdf(w, uniform).item<long>();
    }

    [Theory]
    [InlineData(1000, 1)]     // blocks of 1000: one block
    [InlineData(4096, 2)]     // blocks of 1024
    [InlineData(997, 3)]      // a prime: blocks of one id
    [InlineData(2310, 4)]     // blocks of 770
    public void Takes_the_first_id_whose_running_total_reaches_the_target(int vocab, int seed)
    {
        var random = new Random(seed);
        // Weights with zeros scattered and whole zero stretches (as a mask leaves them).
        var weights = new float[vocab];
        for (int i = 0; i < vocab; i++)
            weights[i] = random.NextDouble() < 0.3 || (i / 97) % 3 == 1 ? 0f : (float)Math.Exp(random.NextDouble() * 8 - 4);
        var running = new double[vocab];
        double sum = 0;
        for (int i = 0; i < vocab; i++) running[i] = sum += weights[i];
        foreach (var u in Enumerable.Range(0, 300).Select(_ => random.NextDouble()).Append(1.0).Append(1e-9).Append(0.5))
        {
            long id = Draw(weights, u);
            Assert.True(weights[id] > 0, $"u={u}: drew id {id} of weight zero");
            double target = u * sum, slack = 1e-5 * sum;
            Assert.True(running[id] >= target - slack, $"u={u}: id {id} ends at {running[id]}, before the target {target}");
            double start = id == 0 ? 0 : running[id - 1];
            Assert.True(start <= target + slack, $"u={u}: id {id} starts at {start}, past the target {target}");
        }
    }

    [Fact]
    public void Never_takes_a_zero_weight_id_at_the_edges()
    {
        // One allowed id at the very end, one at the very start, and one in the middle of a block.
        foreach (int only in new[] { 0, 255_999, 123_457 })
        {
            var weights = new float[256_000];
            weights[only] = 1e-30f;
            foreach (var u in new[] { 1.0, 1e-12, 0.5, 0.999999 }) Assert.Equal(only, Draw(weights, u));
        }
    }

    [Fact]
    public void A_constrained_row_at_a_low_temperature_draws_only_allowed_ids()
    {
        // Temperature 0.05 underflows nearly every weight; the allowed ids are scattered.
        const int vocab = 5000;
        var random = new Random(7);
        var logits = Enumerable.Range(0, vocab).Select(_ => (float)(random.NextDouble() * 60 - 30)).ToArray();
        var bits = new ulong[(vocab + 63) / 64];
        var allowed = new HashSet<int>();
        for (int id = 0; id < vocab; id++)
            if (random.NextDouble() < 0.1) { allowed.Add(id); bits[id >> 6] |= 1UL << (id & 63); }
        var rows = Enumerable.Range(0, 64).Select(i => new SamplingRow(new SamplingParams { Temperature = 0.05f }, SeededUniform.Draw(3, i), [], [], 0, false,
            Mask: Task.FromResult(bits))).ToList();
        using var many = tensor(logits).unsqueeze(0).expand(rows.Count, -1).contiguous();
        var tokens = Sampler.SampleOnce(many, rows).Tokens;
        Assert.All(tokens, t => Assert.Contains(t, allowed));
        // At that temperature the draw is nearly greedy over the allowed ids.
        int best = allowed.MaxBy(id => logits[id]);
        Assert.True(tokens.Count(t => t == best) > rows.Count / 2, $"the best allowed id {best} was drawn {tokens.Count(t => t == best)} times");
    }
}

/// <summary>
/// The sampler works in place only on its own copies: the forward's logits come out as they went
/// in, whatever the rows ask for, so a failed batched pass can re-sample each row from them.
/// </summary>
public class SamplerInPlaceTests
{
    public static TheoryData<string> Kinds => new() { "sampled", "greedy", "masked", "masked-greedy", "penalties", "top-p" };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void The_forward_logits_are_left_as_they_came(string kind)
    {
        const int vocab = 3000;
        var random = new Random(11);
        using var logits = tensor(Enumerable.Range(0, 4 * vocab).Select(_ => (float)(random.NextDouble() * 20 - 10)).ToArray()).reshape(4, 1, vocab);
        using var before = logits.clone();
        var bits = new ulong[(vocab + 63) / 64];
        for (int id = 0; id < vocab; id += 7) bits[id >> 6] |= 1UL << (id & 63);
        SamplingRow Row(SamplingParams p, int i, bool masked = false) =>
            new(p, SeededUniform.Draw(5, i), [1, 2, 3], [4, 5], 0, false, Mask: masked ? Task.FromResult(bits) : null);
        var p = kind switch
        {
            "greedy" or "masked-greedy" => SamplingParams.Greedy,
            "penalties" => new SamplingParams { PresencePenalty = 0.5f, RepetitionPenalty = 1.2f },
            "top-p" => new SamplingParams { Temperature = 0.7f, TopP = 0.9f },
            _ => new SamplingParams { Temperature = 0.8f },
        };
        bool masked = kind.StartsWith("masked", StringComparison.Ordinal);
        var rows = Enumerable.Range(0, 4).Select(i => Row(p, i, masked && i % 2 == 0)).ToList();
        var tokens = Sampler.SampleOnce(logits, rows).Tokens;
        Assert.True(logits.eq(before).all().item<bool>(), $"{kind}: the sampler changed the forward's logits");
        if (masked) Assert.All(new[] { tokens[0], tokens[2] }, t => Assert.Equal(0, t % 7));
    }
}
