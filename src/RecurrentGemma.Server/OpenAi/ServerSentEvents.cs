using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// OpenAI's streaming framing: each event is "data: {json}\n\n", the stream ends with
/// "data: [DONE]\n\n". While the next event is slow (a long prefill), a comment line
/// ": keep-alive" goes out every interval so proxies keep the connection.
/// </summary>
public sealed class ServerSentEvents(HttpResponse response, TimeSpan keepAlive)
{
    static readonly byte[] DataPrefix = "data: "u8.ToArray();
    static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    static readonly byte[] KeepAliveComment = ": keep-alive\n\n"u8.ToArray();
    static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public async Task StartAsync(CancellationToken ct)
    {
        response.StatusCode = 200;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";   // nginx: do not buffer the stream
        await response.StartAsync(ct);
    }

    public async Task WriteAsync<T>(T value, JsonTypeInfo<T> type, CancellationToken ct)
    {
        await response.Body.WriteAsync(DataPrefix, ct);
        await JsonSerializer.SerializeAsync(response.Body, value, type, ct);
        await response.Body.WriteAsync(EventEnd, ct);
        await response.Body.FlushAsync(ct);
    }

    public async Task DoneAsync(CancellationToken ct)
    {
        await response.Body.WriteAsync(Done, ct);
        await response.Body.FlushAsync(ct);
    }

    /// <summary>
    /// Moves to the next event, sending keep-alive comments while waiting. A pending move is
    /// never abandoned: the event source observes the same cancellation and ends by itself, and
    /// an async iterator must not be disposed while a MoveNextAsync is still running.
    /// </summary>
    public async Task<bool> NextAsync<T>(IAsyncEnumerator<T> events, CancellationToken ct)
    {
        var next = events.MoveNextAsync().AsTask();
        while (await Task.WhenAny(next, Task.Delay(keepAlive, CancellationToken.None)) != next)
        {
            if (ct.IsCancellationRequested) continue;   // the source is ending; wait for it
            try
            {
                await response.Body.WriteAsync(KeepAliveComment, ct);
                await response.Body.FlushAsync(ct);
            }
            catch
            {
                try { await next; } catch { /* the write's failure is the one to report */ }
                throw;
            }
        }
        return await next;
    }

    public static string NewId(string prefix) => prefix + Guid.NewGuid().ToString("N")[..24];
}

/// <summary>Runs several started generations (a completions request with several prompts) as one
/// stream, re-indexing choices as prompt × n + choice and summing usage at the end.</summary>
public static class GenerationMerger
{
    /// <summary>Starts every generation (request errors surface here, before any output).
    /// <paramref name="promptField"/> names the field a too-long prompt is blamed on.</summary>
    public static List<Inference.TextGeneration> StartAll(Inference.InferenceService service, IReadOnlyList<Inference.TextGenerationRequest> requests,
        string promptField, CancellationToken ct)
    {
        var started = new List<Inference.TextGeneration>();
        try
        {
            foreach (var r in requests) started.Add(service.Start(r, ct));
            return started;
        }
        catch (Exception e)
        {
            foreach (var g in started) g.DisposeAsync().AsTask().GetAwaiter().GetResult();
            if (e is Engine.ContextTooLongException c)
                throw ApiError.Invalid($"This model's maximum prompt length is {c.MaxPromptTokens} tokens, but the request has {c.PromptTokens} prompt tokens.", promptField, "context_length_exceeded");
            throw;
        }
    }

    public static async IAsyncEnumerable<Inference.TextEvent> ReadAsync(IReadOnlyList<Inference.TextGeneration> generations, int n,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        try
        {
            if (generations.Count == 1)
            {
                await foreach (var e in generations[0].ReadAsync(ct)) yield return e;
                yield break;
            }
            var channel = System.Threading.Channels.Channel.CreateUnbounded<Inference.TextEvent>();
            int prompt = 0, completion = 0, cached = 0;
            var tasks = generations.Select(async (g, p) =>
            {
                int offset = p * n;
                await foreach (var e in g.ReadAsync(ct))
                {
                    switch (e)
                    {
                        case Inference.TextDelta d: await channel.Writer.WriteAsync(d with { Index = d.Index + offset }, ct); break;
                        case Inference.ChoiceFinished f: await channel.Writer.WriteAsync(f with { Index = f.Index + offset }, ct); break;
                        case Inference.UsageReport u:
                            Interlocked.Add(ref prompt, u.PromptTokens); Interlocked.Add(ref completion, u.CompletionTokens); Interlocked.Add(ref cached, u.CachedTokens);
                            break;
                    }
                }
            }).ToList();
            var all = Task.WhenAll(tasks).ContinueWith(t => channel.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
            await foreach (var e in channel.Reader.ReadAllAsync(ct)) yield return e;
            await all;
            yield return new Inference.UsageReport(prompt, completion, cached);
        }
        finally
        {
            foreach (var g in generations) await g.DisposeAsync();
        }
    }
}
