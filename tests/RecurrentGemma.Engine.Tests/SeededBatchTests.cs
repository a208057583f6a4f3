using RecurrentGemma.Model.Modules;
using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// A seeded request's text does not depend on what runs beside it: its prompt is prefilled in a
/// row-exact forward (or one of its own where the kernels are missing; the scheduler) and its
/// decode steps compute its row as they would alone (BatchInvariance), so alone and in
/// differently composed batches it gives the same tokens.
/// </summary>
public class SeededBatchTests
{
    static Sequence Prompt(int length, long? seed = null) =>
        new ActiveRequest(1, new GenerationRequest
        {
            PromptTokens = Enumerable.Range(3, length).ToArray(), MaxNewTokens = 4,
            Sampling = new SamplingParams { Seed = seed },
        }).Init().Choices[0];

    /// <summary>The plan as lists to compare: each forward's row-exact flag, then its (prompt, chunk) rows.</summary>
    static List<List<object>> Plan(IEnumerable<Sequence> prompts, int budget, SeededPrefill seeded, int forwardTokens = 1) =>
        Scheduler.PlanPrefill(prompts, budget, seeded: seeded, forwardTokens: forwardTokens)
            .Select(f => f.Rows.Select(r => (object)r).Prepend(f.RowExact).ToList()).ToList();

    static void Expect(List<List<object>> expected, List<List<object>> actual) => Assert.Equal(expected, actual);

    [Fact]
    public void A_seeded_prompt_is_prefilled_in_whole_budget_chunks_apart_from_unseeded_ones()
    {
        var plain = Prompt(10);
        var seeded = Prompt(700, seed: 5);
        var other = Prompt(20);
        foreach (var mode in new[] { SeededPrefill.OwnForward, SeededPrefill.RowExact })
        {
            bool exact = mode == SeededPrefill.RowExact;
            // Its chunk (the whole budget) does not fit behind another prompt: it waits; the unseeded prompts share a forward.
            Expect([[false, (plain, 10), (other, 20)]], Plan([plain, seeded, other], 512, mode));
            // At the head of the line it runs in chunks of the whole budget.
            Expect([[exact, (seeded, 512)]], Plan([seeded, plain, other], 512, mode));
        }

        // Without the rule, it shares the budget like any prompt.
        Expect([[false, (plain, 10), (seeded, 502)]], Plan([plain, seeded, other], 512, SeededPrefill.Shared));
    }

    [Fact]
    public void Short_seeded_prompts_share_one_row_exact_forward_or_get_forwards_of_their_own()
    {
        var plain = Prompt(10);
        var s1 = Prompt(40, seed: 1);
        var other = Prompt(20);
        var s2 = Prompt(30, seed: 2);
        var s3 = Prompt(600, seed: 3);   // a chunk of 512 would not fit what is left
        var s4 = Prompt(400, seed: 4);   // this one does

        Expect([[false, (s1, 40)], [false, (plain, 10), (other, 20)], [false, (s2, 30)], [false, (s4, 400)]],
            Plan([s1, plain, other, s2, s3, s4], 512, SeededPrefill.OwnForward));
        // Row-exact: the seeded chunks in one forward, opened in the first one's turn.
        Expect([[true, (s1, 40), (s2, 30), (s4, 400)], [false, (plain, 10), (other, 20)]],
            Plan([s1, plain, other, s2, s3, s4], 512, SeededPrefill.RowExact));

        // The same chunks as alone: a seeded prompt never takes a cut-down chunk to fill the budget.
        foreach (var mode in new[] { SeededPrefill.OwnForward, SeededPrefill.RowExact })
        {
            bool exact = mode == SeededPrefill.RowExact;
            Expect([[exact, (s1, 40)]], Plan([s1], 512, mode));
            Expect([[exact, (s3, 512)]], Plan([s3], 512, mode));
            Expect([[false, (plain, 10), (other, 20)]], Plan([plain, s3, other], 512, mode));
        }
    }

    [Fact]
    public void A_forward_for_seeded_prompts_counts_at_least_its_fixed_cost_against_the_budget()
    {
        var seeded = Enumerable.Range(0, 20).Select(i => Prompt(5, seed: i)).ToList();
        var plan = Plan(seeded, 512, SeededPrefill.OwnForward, forwardTokens: 32);
        Assert.Equal(16, plan.Count);   // 16 × 32 = 512
        Assert.All(plan, f => Assert.Equal([false, (seeded[plan.IndexOf(f)], 5)], f));

        // One row-exact forward is charged once: all 20 fit (32 + 19 × 5 = 127 of 512).
        Expect([[true, .. seeded.Select(s => (object)(s, 5))]], Plan(seeded, 512, SeededPrefill.RowExact, forwardTokens: 32));

        // The first prompt of a step runs even when its charge is more than the whole budget.
        Expect([[false, (seeded[0], 5)]], Plan(seeded, 16, SeededPrefill.OwnForward, forwardTokens: 32));
        Expect([[true, (seeded[0], 5)]], Plan(seeded, 16, SeededPrefill.RowExact, forwardTokens: 32));

        // An unseeded prompt behind them takes what is left; without the charge they would take 15 tokens.
        var plain = Prompt(1000);
        Assert.Equal([false, (plain, 512 - 96)], Plan([.. seeded.Take(3), plain], 512, SeededPrefill.OwnForward, forwardTokens: 32)[^1]);
        Assert.Equal([false, (plain, 512 - 42)], Plan([.. seeded.Take(3), plain], 512, SeededPrefill.RowExact, forwardTokens: 32)[^1]);
    }

    static GenerationRequest Sampled(int[] prompt, long? seed, int maxNew = 40, float temperature = 1f, bool logprobs = false) => new()
    {
        PromptTokens = prompt, MaxNewTokens = maxNew, Sampling = new SamplingParams { Temperature = temperature, Seed = seed },
        Logprobs = logprobs, TopLogprobs = logprobs ? 3 : 0,
    };

    /// <summary>The logprobs as bits: equal tokens could hide logits that differ in the last bit, these cannot.</summary>
    static int[] Bits(RunResult r) => r.Logprobs[0].SelectMany(l => l.Top.Select(t => t.Logprob).Prepend(l.Logprob)).Select(BitConverter.SingleToInt32Bits).ToArray();

    [Trait("Device", "cpu-only")]   // the model runs on the test device, the assertion is about a CPU path
    [Fact]
    public async Task A_seeded_request_gives_the_same_tokens_in_every_mix()
    {
        if (!SimdGemv.Supported) return;   // the guarantee rests on the CPU kernels
        int[] prompt = [2, 17, 33, 71, 90, 120, 5, 64];
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 24, MaxRunningSequences = 16, ParkFinishedStates = false, PrefillTokenBudget = 16, SeededForwardTokens = 1 });
        var first = await Run(engine, Sampled(prompt, 777, logprobs: true));
        var alone = first.Tokens[0];
        Assert.Equal(40, first.Logprobs[0].Count);
        for (int mix = 0; mix < 3; mix++)
        {
            // Greedy, unseeded and seeded neighbours with prompts long enough to be chunked, arriving
            // before and after the seeded one; each mix a different size.
            var batch = new List<GenerationRequest>();
            for (int i = 0; i < 5 + 4 * mix; i++)
            {
                int[] p = [2, .. Enumerable.Range(0, 3 + (i * 11 + mix * 5) % 37).Select(j => 3 + (i * 13 + j * 7 + mix) % 250)];
                batch.Add((i % 3) switch
                {
                    0 => Greedy(p, 30),
                    1 => Sampled(p, null, 30, 0.9f),
                    _ => Sampled(p, 100 + i, 30),
                });
            }
            batch.Insert(2 + mix, Sampled(prompt, 777, logprobs: true));
            var together = await Task.WhenAll(batch.Select(r => Run(engine, r)));
            Assert.All(together, r => Assert.Null(r.Error));
            Assert.Equal(alone, together[2 + mix].Tokens[0]);
            Assert.Equal(Bits(first), Bits(together[2 + mix]));
        }
    }

    [Trait("Device", "cpu-only")]   // the assertion is about a CPU path
    [Fact]
    public async Task A_burst_of_seeded_prompts_shares_one_forward_and_each_reads_the_logits_it_reads_alone()
    {
        if (!SimdGemv.Supported) return;
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 24, MaxRunningSequences = 8, ParkFinishedStates = false });
        int[][] prompts = [.. Enumerable.Range(0, 8).Select(i => (int[])[2, .. Enumerable.Range(0, 3 * i).Select(j => 3 + (i * 31 + j * 7) % 250)])];
        // One new token each: the prefill's logits, as the first token's logprobs (bits), are the whole answer.
        GenerationRequest Request(int i) => Sampled(prompts[i], 50 + i, maxNew: 1, logprobs: true);
        var alone = new List<RunResult>();
        for (int i = 0; i < prompts.Length; i++) alone.Add(await Run(engine, Request(i)));

        // A greedy request with 8 choices holds every running place, so the burst queued behind it is admitted in one step.
        var blocker = Greedy([2, 5, 9], 1000) with { N = 8 };
        long before = engine.Snapshot.Forwards;
        Assert.Null((await Run(engine, blocker)).Error);
        long blockerForwards = engine.Snapshot.Forwards - before;

        before = engine.Snapshot.Forwards;
        var blocked = Run(engine, blocker);
        var burst = await Task.WhenAll(Enumerable.Range(0, prompts.Length).Select(i => Run(engine, Request(i))));
        Assert.Null((await blocked).Error);
        long burstForwards = engine.Snapshot.Forwards - before - blockerForwards;

        bool exact = RowExactGemm.Available(EngineHarness.FixtureModel().Config, TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.CPU);
        Assert.Equal(exact ? 1 : prompts.Length, burstForwards);   // where the kernels are missing: a forward each, as before
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Null(burst[i].Error);
            Assert.Equal(alone[i].Tokens[0], burst[i].Tokens[0]);
            Assert.Equal(Bits(alone[i]), Bits(burst[i]));
        }
    }
}
