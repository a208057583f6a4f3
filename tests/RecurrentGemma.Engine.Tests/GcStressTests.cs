using RecurrentGemma.Model;
using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// Steps under constant garbage collection. TorchSharp's temporary Scalars have finalizers and
/// nothing keeps them alive during the native call, so a collection at the wrong moment frees one
/// while libtorch reads it (the soak run failed that way). With the forward and the sampler
/// taking their numbers from <see cref="Scalars"/>, every request must finish cleanly and match
/// the same requests run without the stress.
/// </summary>
public class GcStressTests
{
    [Fact]
    public async Task Requests_finish_cleanly_while_another_thread_collects_garbage_nonstop()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 8, CalibrateThreads = false });
        var prompt = Ids("tiny", "d", "prompt");
        GenerationRequest Request(int i) => new()
        {
            PromptTokens = [.. prompt, i], MaxNewTokens = 24, N = 1,
            Sampling = new SamplingParams { Temperature = 0.9f, TopK = 20, TopP = 0.9f, MinP = 0.01f, RepetitionPenalty = 1.2f, PresencePenalty = 0.3f, Seed = 7 + i, LogitBias = new Dictionary<int, float> { [3] = 2f } },
            Logprobs = true, TopLogprobs = 3,
        };
        var calm = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Run(engine, Request(i))));

        using var stop = new CancellationTokenSource();
        var collector = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        });
        try
        {
            for (int round = 0; round < 4; round++)
            {
                var stressed = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Run(engine, Request(i))));
                for (int i = 0; i < stressed.Length; i++)
                {
                    Assert.True(stressed[i].Error is null, stressed[i].Error);
                    Assert.Equal(calm[i].Tokens[0], stressed[i].Tokens[0]);
                }
            }
        }
        finally
        {
            stop.Cancel();
            await collector;
        }
    }
}
