using RecurrentGemma.Model;
using RecurrentGemma.Model.Tests;

namespace RecurrentGemma.Engine.Tests;

/// <summary>Everything one request produced, collected from its event stream.</summary>
public sealed class RunResult
{
    public List<int>[] Tokens { get; init; } = [];
    public List<TokenLogprob>[] Logprobs { get; init; } = [];
    public FinishReason?[] Finish { get; init; } = [];
    public UsageEvent? Usage { get; set; }
    public string? Error { get; set; }
}

public static class EngineHarness
{
    [System.Runtime.CompilerServices.ModuleInitializer]
    internal static void Initialize() => GriffinFixture.ApplyTestSettings();   // RGEMMA_TEST_CPU_PATHS, before any test

    static readonly Dictionary<string, GriffinForCausalLM> Models = new();

    /// <summary>A fixture model, loaded once per test run (modules hold no per-sequence state).</summary>
    public static GriffinForCausalLM FixtureModel(string fixture = "tiny")
    {
        lock (Models)
        {
            if (!Models.TryGetValue(fixture, out var m)) Models[fixture] = m = GriffinFixture.Get(fixture).LoadModel();
            return m;
        }
    }

    public static EngineClient NewEngine(EngineOptions? options = null, string fixture = "tiny") =>
        new(FixtureModel(fixture), options ?? new EngineOptions { MaxSlots = 16 });

    /// <summary>How long one request may take before a test fails with a timeout instead of hanging.</summary>
    public static readonly TimeSpan CollectTimeout = TimeSpan.FromSeconds(120);

    public static async Task<RunResult> Collect(RequestHandle handle, int n = 1, CancellationToken ct = default)
    {
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(CollectTimeout);
        try { return await CollectUnbounded(handle, n, limit.Token); }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"request {handle.Id} did not finish within {CollectTimeout.TotalSeconds} s (a deadlock?)");
        }
    }

    static async Task<RunResult> CollectUnbounded(RequestHandle handle, int n, CancellationToken ct)
    {
        var r = new RunResult
        {
            Tokens = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray(),
            Logprobs = Enumerable.Range(0, n).Select(_ => new List<TokenLogprob>()).ToArray(),
            Finish = new FinishReason?[n],
        };
        await foreach (var e in handle.ReadEventsAsync(ct))
        {
            switch (e)
            {
                case TokenEvent t:
                    r.Tokens[t.Index].Add(t.TokenId);
                    if (t.Logprob is not null) r.Logprobs[t.Index].Add(t.Logprob);
                    break;
                case FinishedEvent f: r.Finish[f.Index] = f.Reason; break;
                case UsageEvent u: r.Usage = u; break;
                case ErrorEvent err: r.Error = err.Message; break;
            }
        }
        return r;
    }

    public static Task<RunResult> Run(EngineClient engine, GenerationRequest request) => Collect(engine.Submit(request), request.N);

    public static GenerationRequest Greedy(IReadOnlyList<int> prompt, int maxNew = 10, string? session = null, string? owner = null, bool logprobs = false) => new()
    {
        PromptTokens = prompt, MaxNewTokens = maxNew, Sampling = SamplingParams.Greedy, SessionId = session, Owner = owner,
        Logprobs = logprobs, TopLogprobs = logprobs ? 5 : 0,
    };

    public static int[] Ids(string fixture, string @case, string field, int index = -1)
    {
        var fx = GriffinFixture.Get(fixture);
        var e = fx.Cases.GetProperty(@case).GetProperty(field);
        if (index >= 0) e = e[index];
        return e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
    }

    /// <summary>Waits (bounded) until the engine's published snapshot satisfies a condition.</summary>
    public static async Task Until(EngineClient engine, Func<EngineSnapshot, bool> condition, int timeoutMs = 10000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!condition(engine.Snapshot))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"engine never reached the condition; snapshot: {engine.Snapshot}");
            await Task.Delay(2);
        }
    }
}
