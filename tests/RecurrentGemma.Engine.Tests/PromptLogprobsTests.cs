using RecurrentGemma.Model.Tests;
using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// Prompt log-probabilities (completions' echo with logprobs): each prompt token's
/// log-probability given the tokens before it, scored chunk by chunk, held against the
/// reference implementation's full-prefill logits of the fixture's 40-token sequence.
/// </summary>
public class PromptLogprobsTests
{
    static readonly int[] Sequence = Ids("tiny", "c", "sequence");

    /// <summary>log_softmax of the reference's logits at each position, in float64.</summary>
    static double[][] ReferenceLogprobs()
    {
        var fx = GriffinFixture.Get("tiny");
        var (shape, data) = fx.Array("c.logits_prefill");
        int t = (int)shape[0], v = (int)shape[1];
        return Enumerable.Range(0, t).Select(i =>
        {
            var row = data.AsSpan(i * v, v).ToArray().Select(x => (double)x).ToArray();
            double max = row.Max(), log = Math.Log(row.Sum(x => Math.Exp(x - max))) + max;
            return row.Select(x => x - log).ToArray();
        }).ToArray();
    }

    static async Task<(List<EngineEvent> Events, PromptLogprobsEvent? Scores)> Events(EngineClient engine, GenerationRequest request)
    {
        var events = new List<EngineEvent>();
        await foreach (var e in engine.Submit(request).ReadEventsAsync()) events.Add(e);
        return (events, events.OfType<PromptLogprobsEvent>().SingleOrDefault());
    }

    [Theory]
    [InlineData(64)]   // the whole prompt in one scored chunk
    [InlineData(7)]    // chunks that end inside and across the 8-token attention window
    [InlineData(1)]    // one token a step
    public async Task Every_prompt_token_gets_the_reference_log_probability(int chunk)
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, ScoredChunkTokens = chunk });
        var (events, scores) = await Events(engine, new GenerationRequest
        {
            PromptTokens = Sequence, MaxNewTokens = 0, PromptLogprobs = 5, Sampling = SamplingParams.Greedy,
        });
        Assert.NotNull(scores);
        var reference = ReferenceLogprobs();
        Assert.Equal(Sequence.Length - 1, scores!.Logprobs.Count);
        for (int j = 0; j < scores.Logprobs.Count; j++)
        {
            var lp = scores.Logprobs[j];
            Assert.Equal(Sequence[j + 1], lp.TokenId);
            Assert.True(Math.Abs(lp.Logprob - reference[j][Sequence[j + 1]]) <= 4e-4, $"position {j + 1}: {lp.Logprob} vs {reference[j][Sequence[j + 1]]}");
            var refTop = reference[j].Select((x, id) => (x, id)).OrderByDescending(p => p.x).Take(5).ToList();
            Assert.Equal(refTop.Select(p => p.id), lp.Top.Select(a => a.TokenId));
            Assert.All(lp.Top.Zip(refTop), p => Assert.True(Math.Abs(p.First.Logprob - p.Second.x) <= 4e-4));
        }
        // Nothing generated: the choice ends by length at once, the usage counts the prompt.
        Assert.Empty(events.OfType<TokenEvent>());
        Assert.Equal(FinishReason.Length, events.OfType<FinishedEvent>().Single().Reason);
        Assert.Equal((40, 0), (events.OfType<UsageEvent>().Single().PromptTokens, events.OfType<UsageEvent>().Single().CompletionTokens));
    }

    [Fact]
    public async Task A_scored_prompt_still_generates_the_same_tokens_and_reports_its_scores_first()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 8, ScoredChunkTokens = 16 });
        var prompt = Ids("tiny", "d", "prompt");
        var plain = Greedy(prompt, 6, logprobs: true);
        var alone = await Run(engine, plain);
        // Scored, beside a plain request of a longer prompt that prefills in the same steps.
        var scoredTask = Events(engine, plain with { PromptLogprobs = 2 });
        var other = Run(engine, Greedy(Sequence, 6));
        var (events, scores) = await scoredTask;
        Assert.NotNull(scores);
        Assert.Equal(prompt.Length - 1, scores!.Logprobs.Count);
        Assert.All(scores.Logprobs, lp => Assert.Equal(2, lp.Top.Count));
        Assert.True(events.IndexOf(scores) < events.FindIndex(e => e is TokenEvent), "the prompt's scores come before the first token");
        var tokens = events.OfType<TokenEvent>().ToList();
        Assert.Equal(alone.Tokens[0], tokens.Select(t => t.TokenId));
        // Batched with another prompt the numbers may differ in the last bits, not more.
        Assert.All(alone.Logprobs[0].Zip(tokens), p => Assert.True(Math.Abs(p.First.Logprob - p.Second.Logprob!.Logprob) <= 1e-4));
        Assert.Equal((await Run(engine, Greedy(Sequence, 6))).Tokens[0], (await other).Tokens[0]);
    }

    [Fact]
    public async Task A_scored_prompt_never_continues_a_parked_state_and_scores_what_a_generated_token_reported()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 8 });
        var prompt = Ids("tiny", "d", "prompt");
        var first = await Run(engine, Greedy(prompt, 3, logprobs: true));   // parks prompt + answer under its ids
        var extended = prompt.Concat(first.Tokens[0]).ToArray();
        var (events, scores) = await Events(engine, Greedy(extended, 1) with { PromptLogprobs = 0 });
        Assert.Equal(0, events.OfType<UsageEvent>().Single().CachedTokens);
        // The three generated tokens, scored as prompt tokens, have the logprobs they were sampled with.
        var tail = scores!.Logprobs.TakeLast(3).Select(l => l.Logprob).ToList();
        var sampled = first.Logprobs[0].Select(l => l.Logprob).ToList();
        for (int i = 0; i < 3; i++) Assert.True(Math.Abs(tail[i] - sampled[i]) <= 1e-4, $"{tail[i]} vs {sampled[i]}");
    }

    [Fact]
    public async Task Max_new_tokens_zero_needs_prompt_logprobs()
    {
        await using var engine = NewEngine();
        var e = Assert.Throws<InvalidGenerationRequestException>(() => engine.Submit(Greedy(Sequence, 0)));
        Assert.Equal("max_tokens", e.Param);
        Assert.Equal("logprobs", Assert.Throws<InvalidGenerationRequestException>(() => engine.Submit(Greedy(Sequence, 1) with { PromptLogprobs = 21 })).Param);
    }
}
