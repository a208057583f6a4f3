using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

public class CancellationTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    [Fact]
    public async Task Cancelling_a_queued_request_ends_it_without_ever_taking_a_slot()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 4, MaxRunningSequences = 1, ParkFinishedStates = false });
        using var stopA = new CancellationTokenSource();
        var a = engine.Submit(Greedy(Prompt, 4000), stopA.Token);
        await Until(engine, s => s.RunningSequences == 1);
        using var stopB = new CancellationTokenSource();
        var b = engine.Submit(Greedy(Prompt, 5), stopB.Token);
        await Until(engine, s => s.QueuedRequests == 1);
        stopB.Cancel();
        var resultB = await Collect(b);
        Assert.Equal(FinishReason.Cancelled, resultB.Finish[0]);
        Assert.Empty(resultB.Tokens[0]);
        Assert.Equal(1, engine.Snapshot.SlotsUsed);           // only A

        stopA.Cancel();                                       // mid-decode
        var resultA = await Collect(a);
        Assert.Equal(FinishReason.Cancelled, resultA.Finish[0]);
        await Until(engine, s => s.SlotsUsed == 0 && s.SlotsFree == 4);
    }

    [Fact]
    public async Task Cancelling_mid_prefill_frees_the_slot()
    {
        // One prompt token per step: the prompt takes many steps to prefill.
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 2, PrefillTokenBudget = 1, ParkFinishedStates = false });
        var longPrompt = Enumerable.Range(0, 400).Select(i => 3 + i % 200).ToArray();
        var handle = engine.Submit(Greedy(longPrompt, 5));
        var start = engine.Snapshot.Steps;
        await Until(engine, s => s.Steps > start + 3 && s.SlotsUsed == 1);
        await handle.DisposeAsync();
        await Until(engine, s => s.SlotsUsed == 0 && s.RunningSequences == 0);
        Assert.True(engine.Snapshot.Steps < start + 400, "cancelled before the prompt was in");
    }

    [Fact]
    public async Task A_reader_that_leaves_the_stream_early_cancels_the_request()
    {
        await using var engine = NewEngine(new EngineOptions { ParkFinishedStates = false });
        var handle = engine.Submit(Greedy(Prompt, 4000));
        await foreach (var e in handle.ReadEventsAsync())
            if (e is TokenEvent) break;                      // the consumer is gone
        await Until(engine, s => s.SlotsUsed == 0 && s.RunningSequences == 0);
    }

    [Fact]
    public async Task Two_hundred_random_requests_with_random_cancellations_leave_the_pool_whole_and_no_live_tensors()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 12, MaxRunningSequences = 6, MaxQueuedRequests = 300, PrefillTokenBudget = 24 });
        // Warm-up: a smaller round of the same mix, so that tensors made once on first use exist
        // before counting (on a GPU the state's pinned staging rows appear at the first park).
        await RandomRound(engine, 40, seed: 7);
        await Until(engine, s => s.RunningSequences == 0 && s.QueuedRequests == 0);
        Assert.True(engine.Snapshot.Demotions > 0, "the warm-up must have moved a parked state to host memory");
        long liveBefore = engine.Snapshot.LiveTensorsOnEngineThread;

        var results = await RandomRound(engine, 200, seed: 2024);
        Assert.All(results, r => Assert.NotNull(r.Usage));
        Assert.Contains(results, r => r.Finish.Contains(FinishReason.Cancelled));
        Assert.Contains(results, r => r.Finish.All(f => f != FinishReason.Cancelled));

        await Until(engine, s => s.RunningSequences == 0 && s.QueuedRequests == 0);
        var snap = engine.Snapshot;
        Assert.Equal(0, snap.SlotsUsed);
        Assert.Equal(snap.SlotsTotal, snap.SlotsFree + snap.SlotsParked);
        Assert.Equal(liveBefore, snap.LiveTensorsOnEngineThread);
    }

    /// <summary>Random prompts, lengths, n, sessions, sampling, logprobs; a third cancelled at a random moment.</summary>
    static async Task<RunResult[]> RandomRound(EngineClient engine, int count, int seed)
    {
        var rng = new Random(seed);
        var tasks = new List<Task<RunResult>>();
        for (int i = 0; i < count; i++)
        {
            var cts = new CancellationTokenSource();
            var request = new GenerationRequest
            {
                PromptTokens = new[] { 2 }.Concat(Enumerable.Range(0, rng.Next(1, 40)).Select(_ => rng.Next(3, 256))).ToArray(),
                MaxNewTokens = rng.Next(1, 20),
                N = rng.Next(0, 5) == 0 ? 2 : 1,
                SessionId = rng.Next(0, 3) == 0 ? $"s{rng.Next(0, 5)}" : null,
                Sampling = new SamplingParams { Temperature = rng.Next(0, 2), TopP = 0.9f, Seed = rng.Next(0, 2) == 0 ? i : null },
                Logprobs = rng.Next(0, 4) == 0, TopLogprobs = 2,
            };
            var handle = engine.Submit(request, cts.Token);
            if (rng.Next(0, 3) == 0) cts.CancelAfter(rng.Next(0, 30));
            tasks.Add(Collect(handle, request.N));
            if (rng.Next(0, 4) == 0) await Task.Delay(rng.Next(0, 5));
        }
        return await Task.WhenAll(tasks);
    }
}
