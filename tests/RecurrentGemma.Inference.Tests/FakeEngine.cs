using System.Runtime.CompilerServices;
using RecurrentGemma.Engine;

namespace RecurrentGemma.Inference.Tests;

/// <summary>An engine that answers every request with scripted token ids (choice 0), so the
/// inference layer can be tested without a model.</summary>
public sealed class FakeEngine(params int[] script) : IEngineClient
{
    public List<GenerationRequest> Requests { get; } = [];
    public List<int> StoppedChoices { get; } = [];
    public int MaxNewTokens { get; set; } = int.MaxValue;
    /// <summary>Tokens still made after StopChoice, as a real engine makes while the stop is on its way.</summary>
    public int StopLag { get; set; }
    public EngineSnapshot Snapshot => EngineSnapshot.Empty;
    public List<(string SessionId, string? Owner)> Dropped { get; } = [];
    public Task<int> DropSessionAsync(string sessionId, string? owner) { Dropped.Add((sessionId, owner)); return Task.FromResult(0); }

    public IRequestHandle Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        Requests.Add(request);
        return new Handle(this, request);
    }

    sealed class Handle(FakeEngine engine, GenerationRequest request) : IRequestHandle
    {
        bool _stopped;
        public long Id => 1;

        public async IAsyncEnumerable<EngineEvent> ReadEventsAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            int n = 0, lag = engine.StopLag;
            var reason = FinishReason.Length;
            foreach (var id in engine.Script)
            {
                await Task.Yield();
                if (_stopped && lag-- <= 0) { reason = FinishReason.Stop; break; }
                if (request.StopTokenIds.Contains(id)) { reason = FinishReason.Stop; break; }
                yield return new TokenEvent(0, id, null);
                if (++n >= request.MaxNewTokens) break;
            }
            if (_stopped) reason = FinishReason.Stop;
            yield return new FinishedEvent(0, reason);
            yield return new UsageEvent(request.PromptTokens.Count, n, 0);
        }

        public void StopChoice(int index) { _stopped = true; engine.StoppedChoices.Add(index); }
        public void Cancel() { }
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    int[] Script => script;
}
