using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Server.Responses;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// The store's record locks (a conversation's one writer): a holder that keeps renewing holds past
/// its hold time, one that stops (its replica died) lets go after it — in process memory and on a
/// real Redis, where the lock is shared by every replica.
/// </summary>
public class StoreLockTests
{
    static ResponseStore Store(string? redis) => new(
        Options.Create(new SessionsOptions { Store = redis is null ? null : "redis", Redis = redis }),
        Options.Create(new ResponsesOptions()), NullLogger<ResponseStore>.Instance);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_renewed_lock_outlives_its_hold_and_an_abandoned_one_lapses(bool onRedis)
    {
        using var redis = onRedis ? new RedisServer() : null;
        using var store = Store(redis?.ConnectionString);
        using var other = onRedis ? Store(redis!.ConnectionString) : store;   // another replica, with Redis
        // Margins for a VM that stalls for most of a second now and then (seen: 760 ms).
        var hold = TimeSpan.FromSeconds(2);

        using (var renewed = store.TryLock(null, "conv_a", hold, renewEvery: TimeSpan.FromMilliseconds(200)))
        {
            Assert.NotNull(renewed);
            await Task.Delay(5000);   // two and a half holds
            Assert.Null(other.TryLock(null, "conv_a", hold));
        }
        using (var next = other.TryLock(null, "conv_a", hold)) Assert.NotNull(next);   // let go at once

        var abandoned = store.TryLock(null, "conv_b", hold);   // never renewed, never let go
        Assert.NotNull(abandoned);
        Assert.Null(other.TryLock(null, "conv_b", hold));
        await Task.Delay(2500);
        using (var after = other.TryLock(null, "conv_b", hold)) Assert.NotNull(after);
    }
}
