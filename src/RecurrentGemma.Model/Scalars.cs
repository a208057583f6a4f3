using System.Collections.Concurrent;
using TorchSharp;

namespace RecurrentGemma.Model;

/// <summary>
/// Numbers for tensor ops, as TorchSharp Scalars that live for the whole process.
/// Why: TorchSharp turns a number passed to an op (<c>x.pow_(2)</c>, <c>t * 0.5</c>) into a
/// temporary Scalar that owns native memory and has a finalizer, and nothing holds it once its
/// handle has gone to the native call. A garbage collection during that call (any thread
/// allocating, e.g. Kestrel under load) can finalize it while libtorch is still reading it: the
/// soak run hit "Unknown scalar type" in RMSNorm this way. DisposeScopes do not track Scalars.
/// So every number on the forward and sampling paths comes from here, cached per value, and is
/// never freed (a model uses a handful of distinct constants).
/// </summary>
public static class Scalars
{
    static readonly ConcurrentDictionary<double, Scalar> Doubles = new();
    static readonly ConcurrentDictionary<long, Scalar> Longs = new();

    public static Scalar Of(double value) => Doubles.GetOrAdd(value, v => v.ToScalar());
    public static Scalar Of(long value) => Longs.GetOrAdd(value, v => v.ToScalar());

    public static Scalar Zero { get; } = Of(0L);
    public static Scalar One { get; } = Of(1L);
    public static Scalar Two { get; } = Of(2L);
    public static Scalar NegativeInfinity { get; } = Of(double.NegativeInfinity);
    public static Scalar True { get; } = true.ToScalar();
    public static Scalar False { get; } = false.ToScalar();
}
