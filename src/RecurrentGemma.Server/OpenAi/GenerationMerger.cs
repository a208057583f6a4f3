using RecurrentGemma.Inference;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>Runs several started generations (a completions request with several prompts) as one
/// stream, re-indexing choices as prompt × n + choice and summing usage at the end.</summary>
public static class GenerationMerger
{
    /// <summary>
    /// Starts every generation of a validated request — its errors surface here, before any
    /// output — and returns one stream of their events (to be disposed by the caller).
    /// </summary>
    /// <param name="service">The inference layer.</param>
    /// <param name="request">The validated request: one generation per prompt.</param>
    /// <param name="ct">Ends the generations.</param>
    /// <param name="promptTokenIds">Each prompt's ids as the engine got them (vLLM's prompt_token_ids).</param>
    public static IAsyncEnumerator<TextEvent> Start(InferenceService service, ValidatedRequest request, CancellationToken ct, out IReadOnlyList<IReadOnlyList<int>> promptTokenIds)
    {
        var started = new List<TextGeneration>();
        try
        {
            foreach (var r in request.Generations) started.Add(service.Start(r, ct));
        }
        catch
        {
            foreach (var g in started) g.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
        promptTokenIds = started.Select(g => g.PromptTokens).ToList();
        return ReadAsync(started, request.Generations[0].N, ct).GetAsyncEnumerator(ct);
    }

    static async IAsyncEnumerable<TextEvent> ReadAsync(IReadOnlyList<TextGeneration> generations, int n,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        try
        {
            if (generations.Count == 1)
            {
                await foreach (var e in generations[0].ReadAsync(ct)) yield return e;
                yield break;
            }
            var channel = System.Threading.Channels.Channel.CreateUnbounded<TextEvent>();
            int prompt = 0, completion = 0, cached = 0;
            var tasks = generations.Select(async (g, p) =>
            {
                int offset = p * n;
                await foreach (var e in g.ReadAsync(ct))
                {
                    switch (e)
                    {
                        case TextDelta d: await channel.Writer.WriteAsync(d with { Index = d.Index + offset }, ct); break;
                        case PromptLogprobs pl: await channel.Writer.WriteAsync(pl with { Index = pl.Index + offset }, ct); break;
                        case ChoiceFinished f: await channel.Writer.WriteAsync(f with { Index = f.Index + offset }, ct); break;
                        case UsageReport u:
                            Interlocked.Add(ref prompt, u.PromptTokens); Interlocked.Add(ref completion, u.CompletionTokens); Interlocked.Add(ref cached, u.CachedTokens);
                            break;
                    }
                }
            }).ToList();
            var all = Task.WhenAll(tasks).ContinueWith(t => channel.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
            await foreach (var e in channel.Reader.ReadAllAsync(ct)) yield return e;
            await all;
            yield return new UsageReport(prompt, completion, cached);
        }
        finally
        {
            foreach (var g in generations) await g.DisposeAsync();
        }
    }
}
