using static TorchSharp.torch;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The top-p threshold found by selection equals the one found by sorting the row (in float64),
/// on rows from peaked to flat, with ties, zeros and a mass that rounds short of top_p; and the
/// sampler's rows that no candidate count can bring to top_p keep what sorting keeps.
/// </summary>
public class NucleusThresholdTests
{
    /// <summary>The sort's answer: descending, the value at which the running mass reaches top_p.</summary>
    static float BySort(float[] probs, double topP)
    {
        double mass = 0;
        foreach (var x in probs.OrderDescending())
        {
            mass += x;
            if (mass >= topP) return x;
        }
        return 0f;
    }

    static float[] Softmax(double[] logits)
    {
        double max = logits.Max();
        var e = logits.Select(x => Math.Exp(x - max)).ToArray();
        double sum = e.Sum();
        return e.Select(x => (float)(x / sum)).ToArray();
    }

    static double[] Normal(Random random, int n, double sigma) =>
        Enumerable.Range(0, n).Select(_ => sigma * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())).ToArray();

    [Theory]
    [InlineData(50, 0.1)]
    [InlineData(50, 3.0)]
    [InlineData(4096, 0.05)]    // flat: the nucleus is most of the row
    [InlineData(4096, 0.5)]
    [InlineData(4096, 4.0)]     // peaked: a handful of ids
    [InlineData(262144, 0.5)]   // Gemma's vocabulary size, flat
    public void The_threshold_is_the_sorts_at_every_top_p(int vocab, double sigma)
    {
        var random = new Random(vocab + (int)(sigma * 100));
        var probs = Softmax(Normal(random, vocab, sigma));
        var scratch = new float[vocab];
        foreach (double topP in new[] { 1e-6, 0.05, 0.3, 0.5, 0.9, 0.95, 0.999, 1.0 })
            Assert.Equal(BySort(probs, topP), NucleusThreshold.Find(probs, topP, scratch));
        Assert.Equal(probs.Max(), NucleusThreshold.Find(probs, 1e-9, scratch));   // the most likely id always stays
    }

    [Fact]
    public void Ties_zeros_and_a_short_mass_are_answered_as_the_sort_answers_them()
    {
        var scratch = new float[20000];
        // Long runs of equal values (a quantized row) and masked ids (0): pivots land on ties.
        var random = new Random(3);
        var quantized = Enumerable.Range(0, 20000).Select(i => i % 7 == 0 ? 0f : random.Next(1, 9) / 40000f).ToArray();
        foreach (double topP in new[] { 0.01, 0.2, 0.5, 0.77, 0.99 })
            Assert.Equal(BySort(quantized, topP), NucleusThreshold.Find(quantized, topP, scratch));
        // Every id equal: the threshold is their value, so all stay.
        var uniform = Enumerable.Repeat(1f / 20000, 20000).ToArray();
        Assert.Equal(1f / 20000, NucleusThreshold.Find(uniform, 0.9, scratch));
        // A row whose mass rounds short of top_p keeps every id.
        Assert.Equal(0f, NucleusThreshold.Find([0.3f, 0.3f, 0.3f], 1.0, scratch));
        // Ascending and descending rows (the pivot's worst inputs for a naive choice).
        var ascending = Enumerable.Range(1, 20000).Select(i => i / 200010000f).ToArray();
        var descending = ascending.Reverse().ToArray();
        foreach (double topP in new[] { 0.1, 0.6, 0.95 })
        {
            Assert.Equal(BySort(ascending, topP), NucleusThreshold.Find(ascending, topP, scratch));
            Assert.Equal(BySort(descending, topP), NucleusThreshold.Find(descending, topP, scratch));
        }
    }

    [Fact]
    public void Flat_rows_keep_what_sorting_them_keeps()
    {
        // Rows where most of the vocabulary is in the nucleus (as random weights give).
        var random = new Random(8);
        const int rows = 6, vocab = 20000;
        var values = Enumerable.Range(0, rows).SelectMany(r => Normal(random, vocab, 0.3 + 0.1 * r)).Select(x => (float)x).ToArray();
        values[2 * vocab + 11] = float.NegativeInfinity;   // an id an earlier step masked
        using var y = tensor(values).reshape(rows, vocab);
        using var p = tensor(new[] { 0.5f, 0.8f, 0.9f, 0.95f, 0.7f, 0.99f }).unsqueeze(1);
        using var sorted = y.clone();
        using var selected = y.clone();
        Sampler.TopPBySort(sorted, p);
        Sampler.TopPBySelection(selected, p);
        using var kept = sorted.isfinite();
        Assert.True(kept.sum().item<long>() > rows * vocab / 4, "the rows were not flat");
        Assert.True(kept.eq(selected.isfinite()).all().item<bool>(), "the selection kept other ids than sorting");
        Assert.True(sorted.masked_fill(kept.logical_not(), 0).eq(selected.masked_fill(kept.logical_not(), 0)).all().item<bool>(), "a kept logit changed");
    }
}
