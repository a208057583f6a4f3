using System.Collections.Concurrent;

namespace RecurrentGemma.Model;

/// <summary>
/// Byte arrays for state snapshots, kept for reuse by exact length (a state's rows come in a few
/// fixed sizes). Parked states move between the device pool, host memory and the persistent tier
/// all the time; without reuse every move allocates tens of MiB of fresh memory, paying its first
/// touch on the engine thread and leaving the garbage collector a churn of large objects. At most
/// <see cref="MaxPooledBytes"/> of free arrays are kept; beyond that they go to the collector.
/// Thread-safe.
/// </summary>
public static class SnapshotBuffers
{
    static readonly ConcurrentDictionary<int, ConcurrentBag<byte[]>> Free = new();
    static long _pooled;

    /// <summary>Most bytes of free arrays kept (default 64 MiB: four 2B-model states in bf16, enough
    /// for the churn of demotions, restores and writes in flight at once).</summary>
    public static long MaxPooledBytes { get; set; } = 64L << 20;
    public static long PooledBytes => Interlocked.Read(ref _pooled);

    /// <summary>An array of exactly this length, reused when one is free (its contents are stale).</summary>
    public static byte[] Rent(int length)
    {
        if (Free.TryGetValue(length, out var bag) && bag.TryTake(out var array))
        {
            Interlocked.Add(ref _pooled, -length);
            return array;
        }
        return GC.AllocateUninitializedArray<byte>(length);
    }

    /// <summary>Gives an array back; its owner must not touch it again.</summary>
    public static void Return(byte[] array)
    {
        if (Interlocked.Add(ref _pooled, array.Length) > MaxPooledBytes)
        {
            Interlocked.Add(ref _pooled, -array.Length);
            return;
        }
        Free.GetOrAdd(array.Length, _ => new ConcurrentBag<byte[]>()).Add(array);
    }
}
