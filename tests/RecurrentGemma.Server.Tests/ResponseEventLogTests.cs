using RecurrentGemma.Server.Responses;

namespace RecurrentGemma.Server.Tests;

/// <summary>A background response's event log: readers from any sequence number, waiting for more
/// until the log is complete, each seeing every event once and in order.</summary>
public class ResponseEventLogTests
{
    static ResponseStreamEvent E(int n) => new() { Type = "e", SequenceNumber = n };

    [Fact]
    public async Task Readers_get_the_events_after_their_number_as_they_come_until_the_end()
    {
        var log = new ResponseEventLog();
        log.Append([E(0), E(1)]);
        var all = Collect(log, -1);
        var late = Collect(log, 3);
        await Task.Delay(50);
        Assert.False(all.IsCompleted);   // waiting for more
        for (int i = 2; i < 40; i++) log.Append([E(i)]);
        log.Append([]);
        log.Complete();
        Assert.Equal(Enumerable.Range(0, 40), await all);
        Assert.Equal(Enumerable.Range(4, 36), await late);
        Assert.Empty(await Collect(log, 39));   // nothing after the last, and no wait once complete
        Assert.Empty(await Collect(log, int.MaxValue));   // the largest number a client can send: nothing after it (not a wrap to the start)
        Assert.Equal(40, log.Count);
    }

    [Fact]
    public async Task A_reader_that_leaves_stops_waiting()
    {
        var log = new ResponseEventLog();
        using var leave = new CancellationTokenSource(100);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in log.ReadAsync(-1, leave.Token)) { }
        });
    }

    static async Task<List<int>> Collect(ResponseEventLog log, int after)
    {
        var seen = new List<int>();
        await foreach (var e in log.ReadAsync(after, CancellationToken.None)) seen.Add(e.SequenceNumber);
        return seen;
    }
}
