using System.Runtime.CompilerServices;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// A background response's events as they are made, for any number of readers at once: each
/// reads from a sequence number on (the events are numbered from 0 in order, so an event's number
/// is its place in the log) and waits for more until the log is complete.
/// </summary>
public sealed class ResponseEventLog
{
    readonly List<ResponseStreamEvent> _events = [];
    TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    bool _complete;

    public int Count { get { lock (_events) return _events.Count; } }

    public void Append(IEnumerable<ResponseStreamEvent> events)
    {
        TaskCompletionSource changed;
        lock (_events)
        {
            _events.AddRange(events);
            changed = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    /// <summary>No more events will come.</summary>
    public void Complete()
    {
        TaskCompletionSource changed;
        lock (_events)
        {
            _complete = true;
            changed = _changed;
        }
        changed.TrySetResult();
    }

    /// <summary>The events after sequence number <paramref name="startingAfter"/> (−1: all), as they come.</summary>
    public async IAsyncEnumerable<ResponseStreamEvent> ReadAsync(int startingAfter, [EnumeratorCancellation] CancellationToken ct)
    {
        int next = (int)Math.Clamp(startingAfter + 1L, 0, int.MaxValue);   // in long: int.MaxValue + 1 would wrap to the start
        while (true)
        {
            ResponseStreamEvent[] batch;
            bool complete;
            Task changed;
            lock (_events)
            {
                batch = next < _events.Count ? _events.GetRange(next, _events.Count - next).ToArray() : [];
                complete = _complete;
                changed = _changed.Task;
            }
            foreach (var e in batch) yield return e;
            next += batch.Length;
            if (batch.Length > 0) continue;   // look again before waiting
            if (complete) yield break;
            await changed.WaitAsync(ct);
        }
    }
}
