namespace RecurrentGemma.Server.Hosting;

/// <summary>
/// Counts requests in flight and, at shutdown, waits for them for a grace period before
/// cancelling the token every generation is linked to (streams then end cleanly).
/// </summary>
public sealed class InFlightRequests
{
    readonly CancellationTokenSource _cancelAll = new();
    int _count;

    public int Count => Volatile.Read(ref _count);
    public bool Draining { get; private set; }
    public CancellationToken ShutdownToken => _cancelAll.Token;

    public IDisposable Enter()
    {
        Interlocked.Increment(ref _count);
        return new Exit(this);
    }

    public async Task DrainAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        Draining = true;
        var deadline = DateTime.UtcNow + grace;
        while (Count > 0 && DateTime.UtcNow < deadline && !cancellationToken.IsCancellationRequested)
            await Task.Delay(50, CancellationToken.None).ConfigureAwait(false);
        _cancelAll.Cancel();
        var after = DateTime.UtcNow.AddSeconds(5);
        while (Count > 0 && DateTime.UtcNow < after) await Task.Delay(20, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Marks the server as draining without waiting (tests; the readiness probe turns false).</summary>
    public void BeginDrain() => Draining = true;

    sealed class Exit(InFlightRequests owner) : IDisposable
    {
        int _done;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) Interlocked.Decrement(ref owner._count);
        }
    }
}
