namespace RecurrentGemma.Engine;

/// <summary>
/// Requests waiting for admission, in the order they will be admitted: by priority (lower first,
/// as vLLM's priority field), then by arrival. All priorities equal (the default, 0), it is first
/// come, first served. The head is never overtaken by a later request of the same or lower
/// priority: admission stops at a head that does not fit, so a large request is not starved.
/// </summary>
sealed class WaitingQueue : IEnumerable<ActiveRequest>
{
    readonly List<ActiveRequest> _items = [];

    public int Count => _items.Count;

    /// <summary>Behind every request of the same or a more urgent priority.</summary>
    public void Enqueue(ActiveRequest r)
    {
        int at = _items.Count;
        while (at > 0 && _items[at - 1].Request.Priority > r.Request.Priority) at--;
        _items.Insert(at, r);
    }

    public ActiveRequest Peek() => _items[0];

    public ActiveRequest Dequeue()
    {
        var head = _items[0];
        _items.RemoveAt(0);
        return head;
    }

    public bool Remove(ActiveRequest r) => _items.Remove(r);

    public void Clear() => _items.Clear();

    public IEnumerator<ActiveRequest> GetEnumerator() => _items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
