using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

public class LimitsTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    [Fact]
    public async Task A_full_queue_refuses_with_a_typed_overloaded_error()
    {
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 2, MaxRunningSequences = 1, MaxQueuedRequests = 1 });
        using var cts = new CancellationTokenSource();
        var running = engine.Submit(Greedy(Prompt, 4000), cts.Token);
        await Until(engine, s => s.RunningSequences == 1);
        var queued = engine.Submit(Greedy(Prompt, 2), cts.Token);
        var e = Assert.Throws<EngineOverloadedException>(() => engine.Submit(Greedy(Prompt, 2)));
        Assert.Contains("queue is full", e.Message);
        cts.Cancel();
        await Collect(running);
        await Collect(queued);
    }

    [Fact]
    public async Task Without_a_setting_the_running_limit_follows_the_device()
    {
        Assert.Equal(EngineOptions.CpuRunningSequences, new EngineOptions().ForDevice(TorchSharp.DeviceType.CPU).MaxRunningSequences);
        Assert.Equal(EngineOptions.GpuRunningSequences, new EngineOptions().ForDevice(TorchSharp.DeviceType.CUDA).MaxRunningSequences);
        Assert.Equal(5, new EngineOptions { MaxRunningSequences = 5 }.ForDevice(TorchSharp.DeviceType.CUDA).MaxRunningSequences);
        Assert.Throws<InvalidOperationException>(() => new EngineOptions().RunningLimit);   // unresolved

        // Through an engine with no setting: on the CPU the 17th long request waits for a place.
        await using var engine = NewEngine(new EngineOptions { MaxSlots = 20 });
        bool cpu = engine.Options.RunningLimit == EngineOptions.CpuRunningSequences;
        Assert.Equal(cpu ? EngineOptions.CpuRunningSequences : EngineOptions.GpuRunningSequences, engine.Options.RunningLimit);
        if (!cpu) return;   // a GPU test device: 257 requests would only repeat the above
        using var cts = new CancellationTokenSource();
        var handles = Enumerable.Range(0, 17).Select(_ => engine.Submit(Greedy(Prompt, 4000), cts.Token)).ToList();
        await Until(engine, s => s.RunningSequences == 16 && s.QueuedRequests == 1);
        cts.Cancel();
        foreach (var h in handles) await Collect(h);
    }

    [Fact]
    public async Task A_prompt_over_the_maximum_is_refused_before_admission()
    {
        await using var engine = NewEngine(new EngineOptions { MaxPromptTokens = 8 });
        var e = Assert.Throws<ContextTooLongException>(() => engine.Submit(Greedy(Prompt, 2)));
        Assert.Equal((11, 8), (e.PromptTokens, e.MaxPromptTokens));
        Assert.Equal(0, engine.Metrics.QueuedCount);
    }

    [Theory]
    [InlineData("prompt")]
    [InlineData("max_tokens")]
    [InlineData("n")]
    [InlineData("top_logprobs")]
    [InlineData("top_p")]
    [InlineData("temperature")]
    public async Task Invalid_requests_name_the_field(string field)
    {
        await using var engine = NewEngine();
        var ok = Greedy(Prompt, 4);
        var bad = field switch
        {
            "prompt" => ok with { PromptTokens = [2, 300] },
            "max_tokens" => ok with { MaxNewTokens = 0 },
            "n" => ok with { N = 9 },
            "top_logprobs" => ok with { Logprobs = true, TopLogprobs = 21 },
            "top_p" => ok with { Sampling = new SamplingParams { TopP = 0 } },
            _ => ok with { Sampling = new SamplingParams { Temperature = -1 } },
        };
        Assert.Equal(field, Assert.Throws<InvalidGenerationRequestException>(() => engine.Submit(bad)).Param);
    }

    [Fact]
    public void Capacity_can_be_a_memory_budget()
    {
        var o = new EngineOptions { MaxSlots = null, StateMemoryMiB = 100 };
        Assert.Equal(6, o.ResolveSlots(17_238_016).Slots);    // the 2B bf16 state: 16.4 MiB each
        Assert.Throws<ArgumentException>(() => new EngineOptions { MaxSlots = null, StateMemoryMiB = 10 }.ResolveSlots(17_238_016));
    }

    [Fact]
    public void On_a_gpu_the_pool_is_sized_from_free_device_memory_unless_configured()
    {
        const long GiB = 1L << 30, state = 17_238_016;   // the 2B bf16 state
        var h200 = new RecurrentGemma.Model.DeviceMemory.Info(FreeBytes: 134 * GiB, TotalBytes: 140 * GiB);   // 6 GiB of weights loaded
        var (slots, reason) = new EngineOptions().ResolveSlots(state, h200);
        Assert.Equal((140 * GiB * 9 / 10 - 6 * GiB - GiB) / state, slots);
        Assert.Contains("90%", reason);
        Assert.Equal((140 * GiB / 2 - 6 * GiB - GiB) / state, new EngineOptions { DeviceMemoryFraction = 0.5 }.ResolveSlots(state, h200).Slots);
        Assert.Equal(12, new EngineOptions { MaxSlots = 12 }.ResolveSlots(state, h200).Slots);              // explicit settings win
        Assert.Equal(6, new EngineOptions { StateMemoryMiB = 100 }.ResolveSlots(state, h200).Slots);
        Assert.Equal(EngineOptions.DefaultSlots, new EngineOptions().ResolveSlots(state, null).Slots);      // the CPU default
        Assert.Throws<ArgumentException>(() => new EngineOptions { DeviceMemoryFraction = 0.05 }.ResolveSlots(state, h200));
        Assert.Null(RecurrentGemma.Model.DeviceMemory.Query(TorchSharp.torch.CPU));
    }

    [Fact]
    public async Task A_stopped_engine_refuses_new_requests_and_ends_running_ones()
    {
        var engine = NewEngine();
        var handle = engine.Submit(Greedy(Prompt, 4000));
        await Until(engine, s => s.RunningSequences == 1);
        await engine.DisposeAsync();
        var result = await Collect(handle);
        Assert.Equal(FinishReason.Cancelled, result.Finish[0]);
        Assert.Throws<EngineStoppedException>(() => engine.Submit(Greedy(Prompt, 2)));
    }
}
