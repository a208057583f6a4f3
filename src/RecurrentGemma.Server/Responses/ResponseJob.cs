using RecurrentGemma.Inference;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// One response from its generation's first event to its stored record, whoever watches it: a
/// plain request (waits for the end), a streamed one (each event as it comes) or nobody (a
/// background response, see <see cref="BackgroundResponses"/>). It keeps what the response read
/// (the history and the ids sampled for earlier answers), and at the end stores the response and
/// adds the input and the answer to the conversation it ran in.
/// </summary>
public sealed class ResponseJob
{
    public required ResponseRun Run { get; init; }
    public required ValidatedResponseRequest Request { get; init; }
    /// <summary>The items before the new input, oldest first.</summary>
    public required List<ResponseItemDto> History { get; init; }
    /// <summary>The ids sampled for each earlier answer; this answer's are added at the end.</summary>
    public required Dictionary<string, int[]> Sampled { get; init; }
    public StoredConversation? Conversation { get; init; }
    /// <summary>The conversation's lock, let go once the answer is added (or the job ends).</summary>
    public IDisposable? ConversationLock { get; init; }
    public required ResponseStore Store { get; init; }
    public string? Owner { get; init; }
    /// <summary>Runs each write of the job's records (a background job's: only while the response
    /// was not cancelled meanwhile, perhaps on another replica); null: writes at once.</summary>
    public Func<Action, bool>? WriteGuard { get; init; }

    public string Id => Run.Response.Id;
    public ChoiceFinished? Finished { get; private set; }
    public UsageReport? Usage { get; private set; }

    /// <summary>
    /// Reads the generation to its end, handing each batch of the response's events to
    /// <paramref name="emit"/>. Returns false when the generation was cancelled (nothing is stored
    /// then: the caller decides what a cancellation means). A failure of the generation itself
    /// ends the response as failed (stored, its events emitted); any other exception is the
    /// caller's to report.
    /// </summary>
    /// <param name="events">The generation's events.</param>
    /// <param name="next">Moves to the next event (a stream sends keep-alives meanwhile).</param>
    /// <param name="emit">Where the response's events go.</param>
    /// <param name="onText">Called for each piece of text (time to first token).</param>
    /// <param name="onFailure">Called with a failure of the generation (logged by the caller).</param>
    public async Task<bool> RunAsync(IAsyncEnumerator<TextEvent> events, Func<Task<bool>> next,
        Func<IReadOnlyList<ResponseStreamEvent>, Task> emit, Action? onText, Action<Exception> onFailure)
    {
        await emit(Run.Start());
        try
        {
            while (await next())
            {
                switch (events.Current)
                {
                    case TextDelta d: onText?.Invoke(); await emit(Run.Push(d.Text, Logprobs(d))); break;
                    case ChoiceFinished f: Finished = f; break;
                    case UsageReport u: Usage = u; break;
                }
            }
            if (Finished is null || Finished.FinishReason == "cancelled") return false;
            var closing = Run.Finish(Finished.FinishReason, Usage);
            Keep();   // before the last event: a client that continues at once finds it
            await emit(closing);
            return true;
        }
        catch (GenerationFailedException e)
        {
            onFailure(e);
            await Fail("server_error", "The server had an error while generating this response.", null, emit);
            return true;
        }
    }

    /// <summary>Ends the response as failed: stored so, its closing events emitted.</summary>
    public async Task Fail(string code, string message, string? param, Func<IReadOnlyList<ResponseStreamEvent>, Task> emit)
    {
        var failed = Run.Fail(code, message, param);
        Keep();
        await emit(failed);
    }

    static List<ChatTokenLogprobDto>? Logprobs(TextDelta d) => d.Logprobs.Count == 0 ? null : d.Logprobs.Select(ChatCompletionsEndpoint.ToDto).ToList();

    /// <summary>Stores the response as it stands (with store) and, for an answer that finished,
    /// adds the input and the answer to the conversation and lets go of it.</summary>
    public void Keep()
    {
        if (Finished is { TokenIds.Count: > 0 } && Run.Output.Count > 0) Sampled[Run.Output[0].Id] = [.. Finished.TokenIds];
        if (WriteGuard is null) Write();
        else WriteGuard(Write);
    }

    /// <summary>A running background job's sign of life: its record written again as it stands,
    /// while still queued or in progress (never the conversation, which only the end writes).</summary>
    public void Beat()
    {
        void Renew()
        {
            if (Run.Response.Status is "queued" or "in_progress") Store.Put(Owner, Record);
        }
        if (WriteGuard is null) Renew();
        else WriteGuard(Renew);
    }

    void Write()
    {
        var v = Request;
        if (Conversation is not null && Finished is not null && Run.Response.Status is "completed" or "incomplete")
        {
            // The input and the answer join the conversation (not a failed or cancelled run's).
            Store.Put(Owner, Conversation with { Items = [.. History, .. v.Input, .. Run.Output], SampledIds = Sampled });
            ConversationLock?.Dispose();
        }
        if (v.Store) Store.Put(Owner, Record);
    }

    /// <summary>The response as it stands, with what it read.</summary>
    public StoredResponse Record => new()
    {
        Response = Run.Response, Context = [.. History, .. Request.Input], OwnInputCount = Request.Input.Count, SampledIds = Sampled,
        AliveAt = Run.Response.Background ? DateTimeOffset.UtcNow.ToUnixTimeSeconds() : null,
    };
}
