using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// OpenAI's streaming framing: each event is "data: {json}\n\n" (with an "event: name" line
/// before it on the Responses API); chat and completions streams end with "data: [DONE]\n\n". While the next event is slow (a long prefill), a comment line
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

    /// <summary>A named event ("event: name" then the data line), as the Responses API streams them.</summary>
    public async Task WriteEventAsync<T>(string name, T value, JsonTypeInfo<T> type, CancellationToken ct)
    {
        await response.Body.WriteAsync(Encoding.UTF8.GetBytes("event: " + name + "\n"), ct);
        await WriteAsync(value, type, ct);
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
