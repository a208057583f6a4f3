using RecurrentGemma.Model;
using static RecurrentGemma.Engine.Tests.EngineHarness;
using static TorchSharp.torch;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// The step as a GPU needs it, checked on any device (RGEMMA_TEST_DEVICE): one host→device and
/// one device→host copy per forward, seeded sampling independent of the batch and the process,
/// and one request's failure confined to that request.
/// </summary>
public class DeviceStepTests
{
    static SamplingRow Row(SamplingParams p, double u, int top = 0) => new(p, u, [2, 5, 7], [9, 9, 11], top, top > 0);

    public static TheoryData<string> Kinds => new() { "greedy", "sampled", "logprobs", "penalties", "logit_bias", "mixed" };

    static List<SamplingRow> RowsOf(string kind) => kind switch
    {
        "greedy" => [Row(SamplingParams.Greedy, 0.3), Row(SamplingParams.Greedy, 0.7)],
        "sampled" => [Row(new SamplingParams { Temperature = 0.8f, TopK = 5, TopP = 0.9f, MinP = 0.05f }, 0.3), Row(new SamplingParams(), 0.9)],
        "logprobs" => [Row(SamplingParams.Greedy, 0.3, top: 5), Row(new SamplingParams(), 0.6, top: 3)],
        "penalties" => [Row(new SamplingParams { PresencePenalty = 0.5f, FrequencyPenalty = 0.3f, RepetitionPenalty = 1.3f }, 0.4), Row(SamplingParams.Greedy with { RepetitionPenalty = 2f }, 0.1)],
        "logit_bias" => [Row(SamplingParams.Greedy with { LogitBias = new Dictionary<int, float> { [3] = 50 } }, 0.5), Row(new SamplingParams { LogitBias = new Dictionary<int, float> { [4] = -100, [6] = 3 } }, 0.2)],
        _ => [Row(SamplingParams.Greedy, 0.3, top: 2), Row(new SamplingParams { TopK = 3, PresencePenalty = 1, LogitBias = new Dictionary<int, float> { [8] = 2 } }, 0.8)],
    };

    [Theory, MemberData(nameof(Kinds))]
    public void A_decode_step_and_a_prefill_chunk_each_copy_once_in_and_once_out(string kind)
    {
        var model = FixtureModel();
        using var state = model.CreateState(4);
        using var executor = new StepExecutor(model);
        var rows = RowsOf(kind);
        using var scope = NewDisposeScope();

        // A prefill chunk of two ragged prompts that both complete: sample both.
        long before = executor.Transfers.Total;
        executor.Prepare(state, [new long[] { 2, 5, 7, 9 }, new long[] { 2, 6 }], [0, 1], rows, [0, 1]);
        var (first, _) = executor.Sample(executor.Forward());
        Assert.Equal(2, executor.Transfers.Total - before);
        Assert.Equal(1, executor.Transfers.HostToDevice - executor.Transfers.DeviceToHost + 1);

        // A decode step feeding the sampled tokens back.
        before = executor.Transfers.Total;
        executor.Prepare(state, [new long[] { first[0] }, new long[] { first[1] }], [0, 1], rows);
        var (second, logprobs) = executor.Sample(executor.Forward());
        Assert.Equal(2, executor.Transfers.Total - before);
        Assert.All(second, t => Assert.InRange(t, 0, model.Config.VocabSize - 1));
        if (kind is "logprobs") Assert.Equal(5, logprobs[0]!.Top.Count);

        // A prefill chunk that completes no prompt samples nothing: one copy in, none out.
        before = executor.Transfers.Total;
        executor.Prepare(state, [new long[] { 2, 3, 4 }], [2], []);
        using (executor.Forward()) { }
        Assert.Equal(1, executor.Transfers.Total - before);
        // A scored chunk (prompt logprobs) that also samples the prompt's first token: the scores
        // ride the same one copy out.
        before = executor.Transfers.Total;
        executor.Prepare(state, [new long[] { 2, 5, 7, 9 }], [3], rows.Take(1).ToList(), [3], scoreTargets: [5, 7, 9], scoreTop: 2);
        var (scoredFirst, _) = executor.Sample(executor.Forward());
        Assert.Equal(2, executor.Transfers.Total - before);
        Assert.Single(scoredFirst);
        Assert.Equal([5, 7, 9], executor.LastScores.Select(s => s.TokenId));
        Assert.All(executor.LastScores, s => Assert.Equal(2, s.Top.Count));
    }

    [Fact]
    public async Task Through_the_engine_every_forward_stays_within_two_transfers()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 16, MaxRunningSequences = 8, PrefillTokenBudget = 8 });
        var before = engine.Snapshot;
        var requests = RowsOf("mixed").Concat(RowsOf("penalties")).Concat(RowsOf("logprobs")).Select((row, i) => new GenerationRequest
        {
            PromptTokens = [2, .. Enumerable.Range(0, 3 + 4 * i).Select(j => 3 + (i * 7 + j) % 200)],
            MaxNewTokens = 12, Sampling = row.Params with { Seed = i }, Logprobs = row.Logprobs, TopLogprobs = row.TopLogprobs,
        }).ToList();
        requests[1] = requests[1] with { PromptLogprobs = 2 };   // one scores its prompt, in chunks of its own
        var results = await Task.WhenAll(requests.Select(r => Run(engine, r)));
        Assert.All(results, r => Assert.Null(r.Error));
        var after = engine.Snapshot;
        long forwards = after.Forwards - before.Forwards, transfers = after.HostTransfers - before.HostTransfers;
        Assert.True(forwards > 12, $"only {forwards} forwards");
        Assert.True(transfers <= 2 * forwards, $"{transfers} transfers for {forwards} forwards");
    }

    static GenerationRequest Seeded(int[] prompt, long? seed, float temperature = 1f) => new()
    {
        PromptTokens = prompt, MaxNewTokens = 16, Sampling = new SamplingParams { Temperature = temperature, Seed = seed },
    };

    [Fact]
    public async Task A_seeded_request_gives_the_same_tokens_alone_in_a_mixed_batch_and_after_a_restart()
    {
        int[] prompt = [2, 40, 41, 42, 43];
        List<int> alone;
        await using (var engine = NewEngine(new EngineOptions { MaxSlots = 16, ParkFinishedStates = false }))
        {
            alone = (await Run(engine, Seeded(prompt, 1234))).Tokens[0];
            var batch = new List<GenerationRequest>();
            for (int i = 0; i < 7; i++)
                batch.Add(i % 2 == 0 ? Greedy([2, 50 + i, 60 + i], 16) : Seeded([2, 70 + i, 80 + i, 90 + i], 99 + i, 0.7f));
            batch.Insert(3, Seeded(prompt, 1234));
            var together = await Task.WhenAll(batch.Select(r => Run(engine, r)));
            Assert.Equal(alone, together[3].Tokens[0]);
            var other = (await Run(engine, Seeded(prompt, 4321))).Tokens[0];
            Assert.NotEqual(alone, other);   // the seed matters (random weights: 16 tokens never coincide)
        }
        // "Restart": a freshly loaded model and a new engine.
        using var reloaded = Model.Tests.GriffinFixture.Get("tiny").LoadModel();
        await using var again = new EngineClient(reloaded, new EngineOptions { MaxSlots = 4 });
        Assert.Equal(alone, (await Run(again, Seeded(prompt, 1234))).Tokens[0]);
    }

    [Fact]
    public void Uniform_draws_depend_only_on_seed_and_index_and_lie_in_0_1()
    {
        var a = Enumerable.Range(0, 1000).Select(i => SeededUniform.Draw(7, i)).ToArray();
        Assert.Equal(a, Enumerable.Range(0, 1000).Select(i => SeededUniform.Draw(7, i)).ToArray());
        Assert.All(a, u => Assert.InRange(u, double.Epsilon, 1.0));
        Assert.InRange(a.Average(), 0.45, 0.55);
        Assert.NotEqual(a[0], SeededUniform.Draw(8, 0));
    }

    [Fact]
    public async Task A_fault_while_sampling_one_row_fails_that_request_only()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 16, MaxRunningSequences = 8, ParkFinishedStates = false });
        int[] poisoned = [2, 250, 251];
        int calls = 0;
        engine.RowHook = r =>
        {
            // Fails on the poisoned request's fifth row: mid-stream, after it produced tokens.
            if (r.PromptTokens.SequenceEqual(poisoned) && Interlocked.Increment(ref calls) == 5) throw new InvalidOperationException("injected fault");
        };
        var healthy = Enumerable.Range(0, 4).Select(i => Greedy([2, 30 + i, 31 + i], 20)).ToList();
        var expected = new List<List<int>>();
        await using (var clean = NewEngine(new EngineOptions { MaxSlots = 8, ParkFinishedStates = false }))
            foreach (var h in healthy) expected.Add((await Run(clean, h)).Tokens[0]);

        var all = healthy.Append(Greedy(poisoned, 20)).Select(r => Run(engine, r)).ToList();
        var results = await Task.WhenAll(all);
        Assert.Contains("injected fault", results[4].Error);
        for (int i = 0; i < 4; i++)
        {
            Assert.Null(results[i].Error);
            Assert.Equal(expected[i], results[i].Tokens[0]);
        }
        engine.RowHook = null;
        Assert.Null((await Run(engine, Greedy([2, 9, 9], 5))).Error);   // later steps go on
        await Until(engine, s => s.SlotsUsed == 0 && s.RunningSequences == 0);
    }
}
