using RecurrentGemma.Model.Modules;
using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// A seeded request's text does not depend on what runs beside it: its prompt is prefilled in a
/// forward of its own (the scheduler) and its decode steps compute its row as they would alone
/// (BatchInvariance), so alone and in differently composed batches it gives the same tokens.
/// </summary>
public class SeededBatchTests
{
    static Sequence Prompt(int length, long? seed = null) =>
        new ActiveRequest(1, new GenerationRequest
        {
            PromptTokens = Enumerable.Range(3, length).ToArray(), MaxNewTokens = 4,
            Sampling = new SamplingParams { Seed = seed },
        }).Init().Choices[0];

    [Fact]
    public void A_seeded_prompt_is_prefilled_in_a_forward_of_its_own()
    {
        var plain = Prompt(10);
        var seeded = Prompt(700, seed: 5);
        var other = Prompt(20);

        // Its chunk (the whole budget) does not fit behind another prompt: it waits; the unseeded prompts share a forward.
        var plan = Scheduler.PlanPrefill([plain, seeded, other], 512, seededAlone: true);
        Assert.Equal([[(plain, 10), (other, 20)]], plan);

        // At the head of the line it runs alone, in chunks of the whole budget.
        plan = Scheduler.PlanPrefill([seeded, plain, other], 512, seededAlone: true);
        Assert.Equal([[(seeded, 512)]], plan);

        // Without the rule, it shares the budget like any prompt.
        plan = Scheduler.PlanPrefill([plain, seeded, other], 512);
        Assert.Equal([[(plain, 10), (seeded, 502)]], plan);
    }

    [Fact]
    public void Short_seeded_prompts_share_the_step_in_forwards_of_their_own()
    {
        var plain = Prompt(10);
        var s1 = Prompt(40, seed: 1);
        var other = Prompt(20);
        var s2 = Prompt(30, seed: 2);
        var s3 = Prompt(600, seed: 3);   // a chunk of 512 would not fit what is left
        var s4 = Prompt(400, seed: 4);   // this one does

        var plan = Scheduler.PlanPrefill([s1, plain, other, s2, s3, s4], 512, seededAlone: true);
        Assert.Equal([[(s1, 40)], [(plain, 10), (other, 20)], [(s2, 30)], [(s4, 400)]], plan);

        // The same chunks as alone: a seeded prompt never takes a cut-down chunk to fill the budget.
        Assert.Equal([[(s1, 40)]], Scheduler.PlanPrefill([s1], 512, seededAlone: true));
        Assert.Equal([[(s3, 512)]], Scheduler.PlanPrefill([s3], 512, seededAlone: true));
        Assert.Equal([[(plain, 10), (other, 20)]], Scheduler.PlanPrefill([plain, s3, other], 512, seededAlone: true));
    }

    [Fact]
    public void A_forward_of_its_own_counts_at_least_its_fixed_cost_against_the_budget()
    {
        var seeded = Enumerable.Range(0, 20).Select(i => Prompt(5, seed: i)).ToList();
        var plan = Scheduler.PlanPrefill(seeded, 512, seededAlone: true, forwardTokens: 32);
        Assert.Equal(16, plan.Count);   // 16 × 32 = 512
        Assert.All(plan, f => Assert.Equal(5, Assert.Single(f).Tokens));

        // The first prompt of a step runs even when its charge is more than the whole budget.
        Assert.Equal([[(seeded[0], 5)]], Scheduler.PlanPrefill(seeded, 16, seededAlone: true, forwardTokens: 32));

        // An unseeded prompt behind them takes what is left; without the charge they would take 100 tokens.
        var plain = Prompt(1000);
        plan = Scheduler.PlanPrefill([.. seeded.Take(3), plain], 512, seededAlone: true, forwardTokens: 32);
        Assert.Equal((plain, 512 - 96), Assert.Single(plan[^1]));
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
}
