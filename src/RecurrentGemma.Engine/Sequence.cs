using System.Threading.Channels;

namespace RecurrentGemma.Engine;

internal enum SequencePhase { Waiting, Prefilling, Decoding, Finished }

/// <summary>One choice of a request as the engine runs it: its slot, what the slot has consumed,
/// what was generated, and the token sampled but not yet fed back (<see cref="Pending"/>).</summary>
internal sealed class Sequence(ActiveRequest request, int index)
{
    public ActiveRequest Request { get; } = request;
    public int Index { get; } = index;
    public int Slot { get; set; } = -1;
    public SequencePhase Phase { get; set; } = SequencePhase.Waiting;
    /// <summary>Exactly the ids fed into the slot's state, in order.</summary>
    public List<int> Consumed { get; } = [];
    public List<int> Generated { get; } = [];
    public int? Pending { get; set; }
    /// <summary>The choice's random stream (<see cref="SeededUniform"/>) and how many draws it made.</summary>
    public ulong Seed { get; set; }
    public long Draws { get; set; }
    public bool StopRequested { get; set; }
    /// <summary>The choice's own constraint (a fork of the request's), or null for free text.</summary>
    public ITokenConstraint? Constraint { get; set; }

    public int PromptRemaining => Request.Request.PromptTokens.Count - Consumed.Count;
}

/// <summary>A submitted request inside the engine: its choices and its event stream.</summary>
internal sealed class ActiveRequest(long id, GenerationRequest request)
{
    public long Id { get; } = id;
    public GenerationRequest Request { get; } = request;
    public Channel<EngineEvent> Events { get; } = Channel.CreateUnbounded<EngineEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    public Sequence[] Choices { get; private set; } = [];

    public ActiveRequest Init()
    {
        Choices = Enumerable.Range(0, Request.N).Select(i => new Sequence(this, i) { Constraint = Request.Constraint?.Fork() }).ToArray();
        return this;
    }
    public int CachedTokens { get; set; }
    /// <summary>Prompt log-probabilities scored so far (<see cref="GenerationRequest.PromptLogprobs"/>).</summary>
    public List<TokenLogprob> PromptScores { get; } = [];
    volatile bool _abortRequested;
    /// <summary>Its caller cancelled it (set on any thread; seen by the engine when a request that
    /// was still restoring arrives).</summary>
    public bool AbortRequested { get => _abortRequested; set => _abortRequested = value; }
    public bool Admitted { get; set; }
    public bool Done { get; set; }
    public bool Cancelled { get; set; }
    /// <summary>A stored state this request extends, read from the persistent tier on the caller's
    /// thread before queueing (so the engine thread never waits on disk); adopted at admission.</summary>
    public HostEntry? Restored { get; set; }
    /// <summary>The caller's trace context (the HTTP request span), for the engine's spans.</summary>
    public System.Diagnostics.ActivityContext TraceParent { get; init; }
    public DateTimeOffset SubmittedAt { get; } = DateTimeOffset.UtcNow;
    public DateTimeOffset? AdmittedAt { get; set; }
    public DateTimeOffset? FirstTokenAt { get; set; }
}
