using RecurrentGemma.Model.Modules;
using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// A lone prompt chunk of 8–16 tokens — often a conversation's next turn on its parked state —
/// takes the row-exact forward where its kernels timed faster than the small-batch passes
/// (<see cref="RowExactGemm.TakesLoneChunk"/>), seed or no seed; longer, shorter or shared
/// chunks keep the ordinary forward, and the answer is the same to float32 rounding.
/// </summary>
[Collection(nameof(LoneChunkTests))]   // flips a process-wide switch and counts the shared model's forwards: never alongside the other engine tests
[CollectionDefinition(nameof(LoneChunkTests), DisableParallelization = true)]
public class LoneChunkTests
{
    static async Task<(RunResult Result, long RowExact)> Prefill(EngineClient engine, int[] prompt, bool? loneChunks)
    {
        var model = FixtureModel();
        var saved = RowExactGemm.LoneChunks;
        RowExactGemm.LoneChunks = loneChunks;
        try
        {
            long before = model.RowExactForwards;
            var result = await Run(engine, Greedy(prompt, maxNew: 1, logprobs: true));
            Assert.Null(result.Error);
            return (result, model.RowExactForwards - before);
        }
        finally { RowExactGemm.LoneChunks = saved; }
    }

    static int[] Prompt(int length) => [2, .. Enumerable.Range(0, length - 1).Select(i => 3 + i * 13 % 240)];

    [Trait("Device", "cpu-only")]   // the assertion is about a CPU path
    [Theory]
    [InlineData(8, 1)]
    [InlineData(12, 1)]
    [InlineData(16, 1)]
    [InlineData(7, 0)]     // fewer than 8: the small-batch passes serve
    [InlineData(17, 0)]    // more than 16: the ordinary forward
    public async Task A_lone_short_prompt_takes_the_row_exact_forward_and_answers_alike(int length, int rowExact)
    {
        var model = FixtureModel();
        if (!model.RowExactAvailable) return;   // where the kernels are missing nothing changes
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, ParkFinishedStates = false });
        var prompt = Prompt(length);
        var (routed, count) = await Prefill(engine, prompt, loneChunks: true);
        var (plain, none) = await Prefill(engine, prompt, loneChunks: false);
        Assert.Equal(rowExact, count);
        Assert.Equal(0, none);
        Assert.Equal(plain.Tokens[0], routed.Tokens[0]);
        var a = plain.Logprobs[0][0].Top;
        var b = routed.Logprobs[0][0].Top;
        Assert.Equal(a.Select(t => t.TokenId), b.Select(t => t.TokenId));
        for (int i = 0; i < a.Count; i++) Assert.True(Math.Abs(a[i].Logprob - b[i].Logprob) < 1e-4, $"top {i}: {a[i].Logprob} vs {b[i].Logprob}");
    }

    [Trait("Device", "cpu-only")]
    [Fact]
    public async Task A_next_turn_on_a_parked_state_takes_it_too()
    {
        var model = FixtureModel();
        if (!model.RowExactAvailable) return;
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4 });
        var first = Prompt(40);
        var turn1 = await Run(engine, Greedy(first, maxNew: 3, session: "s"));
        Assert.Null(turn1.Error);
        int[] next = [.. first, .. turn1.Tokens[0], .. Enumerable.Range(50, 12)];   // 12 new tokens after the parked state's
        var saved = RowExactGemm.LoneChunks;
        RowExactGemm.LoneChunks = true;
        try
        {
            long before = model.RowExactForwards;
            var turn2 = await Run(engine, Greedy(next, maxNew: 2, session: "s"));
            Assert.Null(turn2.Error);
            Assert.True(turn2.Usage!.CachedTokens > 0, "the second turn should continue the parked state");
            Assert.Equal(1, model.RowExactForwards - before);
        }
        finally { RowExactGemm.LoneChunks = saved; }
    }
}
