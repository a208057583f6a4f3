using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

public class BatchingTests
{
    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-long")]
    public async Task Greedy_continuation_through_the_engine_equals_the_reference(string fixture)
    {
        await using var engine = NewEngine(fixture: fixture);
        var expected = Ids(fixture, "d", "generated");
        var result = await Run(engine, Greedy(Ids(fixture, "d", "prompt"), expected.Length));
        Assert.Equal(expected, result.Tokens[0]);
        Assert.Equal(FinishReason.Length, result.Finish[0]);
        Assert.Equal(expected.Length, result.Usage!.CompletionTokens);
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("tiny-long")]
    public async Task Eight_requests_run_together_give_what_each_gives_alone(string fixture)
    {
        var rng = new Random(1);
        int vocab = FixtureModel(fixture).Config.VocabSize;
        var prompts = Enumerable.Range(0, 8).Select(i => new[] { 2 }.Concat(Enumerable.Range(0, 3 + 5 * i).Select(_ => rng.Next(3, vocab))).ToArray()).ToList();
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 24, MaxRunningSequences = 8, PrefillTokenBudget = 16, ParkFinishedStates = false }, fixture);
        var alone = new List<List<int>>();
        foreach (var p in prompts) alone.Add((await Run(engine, Greedy(p, 12))).Tokens[0]);
        var together = await Task.WhenAll(prompts.Select(p => Run(engine, Greedy(p, 12))));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(alone[i], together[i].Tokens[0]);
        await Until(engine, s => s.SlotsUsed == 0);
    }

    [Fact]
    public async Task Stop_ids_end_a_choice_without_being_emitted()
    {
        await using var engine = NewEngine();
        var generated = Ids("tiny", "d", "generated");   // 110, 201, 241, 11, …
        var request = Greedy(Ids("tiny", "d", "prompt"), 24) with { StopTokenIds = new HashSet<int> { 241 } };
        var result = await Run(engine, request);
        Assert.Equal(generated[..2], result.Tokens[0]);
        Assert.Equal(FinishReason.Stop, result.Finish[0]);
    }

    [Fact]
    public async Task Min_new_tokens_keeps_stop_ids_from_being_sampled_until_then_in_its_own_row_only()
    {
        await using var engine = NewEngine();
        var generated = Ids("tiny", "d", "generated");   // greedy: 110, 201, 241, 11, …
        var stopAt241 = Greedy(Ids("tiny", "d", "prompt"), 24) with { StopTokenIds = new HashSet<int> { 241 } };
        var held = stopAt241 with { MinNewTokens = 3 };

        // Alone, then both in one batch: the −∞ on 241 belongs to the row that asked for it.
        var heldAlone = await Run(engine, held);
        var both = await Task.WhenAll(Run(engine, stopAt241), Run(engine, held));
        Assert.Equal(generated[..2], both[0].Tokens[0]);
        Assert.Equal(heldAlone.Tokens[0], both[1].Tokens[0]);

        var tokens = heldAlone.Tokens[0];
        Assert.Equal(generated[..2], tokens.Take(2));
        Assert.True(tokens.Count >= 3, $"{tokens.Count} tokens");
        Assert.NotEqual(241, tokens[2]);                 // the argmax was 241: the next best came instead
        Assert.DoesNotContain(241, tokens);              // stop ids are never emitted

        // At its minimum the stop id may come again: two tokens in, 241 is third as before.
        Assert.Equal(generated[..2], (await Run(engine, stopAt241 with { MinNewTokens = 2 })).Tokens[0]);
        var e = Assert.Throws<InvalidGenerationRequestException>(() => engine.Submit(stopAt241 with { MinNewTokens = 25 }));
        Assert.Equal("min_tokens", e.Param);
    }

    [Fact]
    public async Task Stop_now_from_the_text_layer_ends_the_choice()
    {
        // Room for 200k tokens (~100 s of the tiny model), so the engine cannot finish before the
        // reader asks it to stop even when a loaded CI machine starves the reader for seconds (4000
        // tokens, ~2 s, once ran out first).
        await using var engine = NewEngine(new EngineOptions { MaxNewTokens = 200_000 });
        var handle = engine.Submit(Greedy(Ids("tiny", "d", "prompt"), 200_000));
        var tokens = 0;
        FinishReason? finish = null;
        await foreach (var e in handle.ReadEventsAsync())
        {
            if (e is TokenEvent && ++tokens == 3) handle.StopChoice(0);
            if (e is FinishedEvent f) finish = f.Reason;
        }
        Assert.Equal(FinishReason.Stop, finish);
        Assert.InRange(tokens, 3, 199_999);   // steps already in flight may add a few
    }

    [Fact]
    public async Task N_choices_share_one_prefill_and_forked_greedy_choices_agree()
    {
        await using var engine = NewEngine();
        var prompt = Ids("tiny", "d", "prompt");
        var greedy = await Run(engine, Greedy(prompt, 8) with { N = 3 });
        Assert.Equal(greedy.Tokens[0], greedy.Tokens[1]);
        Assert.Equal(greedy.Tokens[0], greedy.Tokens[2]);
        Assert.Equal(Ids("tiny", "d", "generated")[..8], greedy.Tokens[0]);
        Assert.Equal(24, greedy.Usage!.CompletionTokens);
        Assert.Equal(prompt.Length, greedy.Usage.PromptTokens);

        var sampled = await Run(engine, new GenerationRequest { PromptTokens = prompt, N = 3, MaxNewTokens = 8, Sampling = new SamplingParams { Temperature = 1.5f, Seed = 7 } });
        Assert.True(sampled.Tokens.Select(t => string.Join(",", t)).Distinct().Count() > 1, "seeded choices should differ from each other");
        Assert.All(sampled.Finish, f => Assert.Equal(FinishReason.Length, f));
    }

    [Fact]
    public async Task A_seeded_request_gives_the_same_tokens_alone_and_batched_with_others()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 24, MaxRunningSequences = 8, ParkFinishedStates = false });
        var prompt = Ids("tiny", "d", "prompt");
        var seeded = new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 16, Sampling = new SamplingParams { Temperature = 0.9f, TopP = 0.95f, TopK = 50, Seed = 1234 } };
        var alone = await Run(engine, seeded);
        var rng = new Random(5);
        for (int round = 0; round < 2; round++)
        {
            var others = Enumerable.Range(0, 7).Select(i => Run(engine, new GenerationRequest
            {
                PromptTokens = new[] { 2 }.Concat(Enumerable.Range(0, 5 + i).Select(_ => rng.Next(3, 256))).ToArray(),
                MaxNewTokens = 10 + i, Sampling = new SamplingParams { Temperature = 1.2f },
            })).ToList();
            var batched = await Run(engine, seeded);
            await Task.WhenAll(others);
            Assert.Equal(alone.Tokens[0], batched.Tokens[0]);
        }
        var otherSeed = await Run(engine, seeded with { Sampling = seeded.Sampling with { Seed = 99 } });
        Assert.NotEqual(alone.Tokens[0], otherSeed.Tokens[0]);
    }

    [Fact]
    public async Task Logprobs_are_the_models_log_softmax_with_sorted_alternatives()
    {
        await using var engine = NewEngine();
        var result = await Run(engine, Greedy(Ids("tiny", "d", "prompt"), 4, logprobs: true));
        Assert.Equal(4, result.Logprobs[0].Count);
        var fx = RecurrentGemma.Model.Tests.GriffinFixture.Get("tiny");
        var stepLogits = fx.Array("d.step_logits").Data;
        for (int k = 0; k < 4; k++)
        {
            var row = stepLogits.AsSpan(k * 256, 256);
            double max = double.MinValue; foreach (var v in row) max = Math.Max(max, v);
            double sum = 0; foreach (var v in row) sum += Math.Exp(v - max);
            var lp = result.Logprobs[0][k];
            Assert.Equal(row[lp.TokenId] - max - Math.Log(sum), lp.Logprob, 3);
            Assert.Equal(5, lp.Top.Count);
            Assert.Equal(lp.TokenId, lp.Top[0].TokenId);   // greedy picked the most likely
            Assert.True(lp.Top.Zip(lp.Top.Skip(1)).All(p => p.First.Logprob >= p.Second.Logprob));
        }
    }
}
