using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// A background response's events kept in the shared store as well (Redis: <see cref="ResponseStore.SharesLists"/>),
/// so that its stream can be resumed on any replica, not only on the one running it. The events
/// go to a list under the response's id in order — an event's index there is its sequence number —
/// and an empty item marks the end. One loop per response writes them: whatever piled up while
/// the last append was on its way goes in the next one, so a fast answer costs a handful of
/// round trips, not one per token. A reader on another replica reads the list from a number on
/// and looks again five times a second until the end mark, or — should the running replica have
/// died before writing it — until the record has ended (a record left running by a dead server is
/// settled as failed after a minute; <see cref="BackgroundResponses.Settle"/>). The list expires
/// 10 minutes after its last append, as the running replica's own log is kept 10 minutes.
/// </summary>
public static class SharedEventLog
{
    public static readonly TimeSpan KeptFor = TimeSpan.FromMinutes(10);
    static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(200);
    /// <summary>How long a reader waits for the end mark once the record says the response ended.</summary>
    static readonly TimeSpan EndGrace = TimeSpan.FromSeconds(3);

    /// <summary>Writes one response's events to its shared list, in order, then the end mark.</summary>
    public sealed class Writer
    {
        readonly Channel<ResponseStreamEvent> _queue = Channel.CreateUnbounded<ResponseStreamEvent>(new UnboundedChannelOptions { SingleReader = true });
        readonly Task _loop;

        public Writer(ResponseStore store, string? owner, string id, ILogger log) => _loop = Task.Run(() => LoopAsync(store, owner, id, log));

        public void Add(IEnumerable<ResponseStreamEvent> events)
        {
            foreach (var e in events) _queue.Writer.TryWrite(e);
        }

        /// <summary>No more events: the loop writes what is left and the end mark.</summary>
        public Task CompleteAsync()
        {
            _queue.Writer.TryComplete();
            return _loop;
        }

        async Task LoopAsync(ResponseStore store, string? owner, string id, ILogger log)
        {
            var batch = new List<byte[]>();
            bool failed = false;
            while (await _queue.Reader.WaitToReadAsync())
            {
                batch.Clear();
                while (_queue.Reader.TryRead(out var e)) batch.Add(JsonSerializer.SerializeToUtf8Bytes(e, ResponsesJson.Default.ResponseStreamEvent));
                if (failed) continue;   // a gap would misnumber every later event: stop sharing, keep draining
                try { await store.AppendListAsync(owner, id, batch, KeptFor); }
                catch (ResponseStoreUnavailableException e)
                {
                    failed = true;
                    log.LogWarning("Background response {ResponseId}: its events could not be written to the shared store ({Error}); other replicas cannot resume its stream", id, e.InnerException?.GetType().Name);
                }
            }
            if (failed) return;
            try { await store.AppendListAsync(owner, id, [[]], KeptFor); }
            catch (ResponseStoreUnavailableException) { }   // readers end when the record has ended
        }
    }

    /// <summary>Whether the shared store holds any of this response's events.</summary>
    public static async Task<bool> ExistsAsync(ResponseStore store, string? owner, string id) => (await store.ReadListAsync(owner, id, 0, 1)).Count > 0;

    /// <summary>The events after <paramref name="startingAfter"/>, as they come, until the end mark or
    /// until the response has ended (<paramref name="status"/>: its record's status as settled; null: deleted).</summary>
    public static async IAsyncEnumerable<ResponseStreamEvent> ReadAsync(ResponseStore store, string? owner, string id, int startingAfter,
        Func<Task<string?>> status, [EnumeratorCancellation] CancellationToken ct)
    {
        long next = Math.Max(0, startingAfter + 1L);   // in long: int.MaxValue + 1 would wrap to the start
        DateTimeOffset? endedAt = null;
        while (true)
        {
            var items = await store.ReadListAsync(owner, id, next);
            foreach (var item in items)
            {
                if (item is null || item.Length == 0) yield break;   // the end mark (or an item this server cannot open)
                if (JsonSerializer.Deserialize(item, ResponsesJson.Default.ResponseStreamEvent) is not { } e) yield break;
                yield return e;
                next++;
            }
            if (items.Count > 0) continue;   // look again before waiting
            var now = await status();
            if (now is null) yield break;   // deleted meanwhile
            if (now is not ("queued" or "in_progress"))
            {
                endedAt ??= DateTimeOffset.UtcNow;
                if (DateTimeOffset.UtcNow - endedAt > EndGrace) yield break;   // ended, and no end mark came: its server stopped
            }
            await Task.Delay(Poll, ct);
        }
    }
}
