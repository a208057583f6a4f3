using System.Buffers;
using TorchSharp;
using static TorchSharp.torch;

namespace RecurrentGemma.Model;

/// <summary>Counts the copies between host and device: the engine's budget is one each way per step.</summary>
public sealed class TransferCounter
{
    long _toDevice, _toHost;
    public long HostToDevice => Interlocked.Read(ref _toDevice);
    public long DeviceToHost => Interlocked.Read(ref _toHost);
    public long Total => HostToDevice + DeviceToHost;
    /// <summary>Counts a host→device copy (the step buffer's, or a constrained step's mask).</summary>
    public void CountUpload() => Interlocked.Increment(ref _toDevice);

    /// <summary>The one device→host copy of a step: a float64 vector read back whole.</summary>
    public double[] Download(Tensor values)
    {
        using var scope = NewDisposeScope();
        Interlocked.Increment(ref _toHost);
        var host = values.to(ScalarType.Float64).reshape(-1).cpu();
        return host.data<double>().ToArray();
    }
}

/// <summary>
/// Everything a step needs from the host, packed into one float64 vector and copied to the
/// device once: token ids, slots, positions, ring indices, rotary tables, sampling parameters
/// and random numbers. Integers up to 2⁵³ are exact in float64, so one buffer serves every
/// type; each <see cref="Segment"/> is cut out and converted on the device (no sync). On CUDA
/// the host side is a pinned staging tensor and the copy is non-blocking.
/// Usage per step: <see cref="Clear"/>, Add…, <see cref="Upload"/>, then the typed views.
/// </summary>
public sealed unsafe class StepBuffer : IDisposable
{
    public readonly record struct Segment(int Offset, int Length)
    {
        public bool IsEmpty => Length == 0;
    }

    // Rented, not allocated: a buffer made per call (the model's convenience Forward, the
    // sampler's helpers) then costs no managed garbage once the pool holds one.
    double[] _host = ArrayPool<double>.Shared.Rent(4096);
    int _length;
    Tensor? _staging;      // pinned host tensor (CUDA only), kept across steps
    Tensor? _device;       // this step's copy on the device (owned by the caller's dispose scope)
    bool _unsyncedUpload;  // an upload with no download after it: the staging may still be read

    public StepBuffer(Device device, TransferCounter? counter = null)
    {
        Device = device;
        Counter = counter ?? new TransferCounter();
    }

    public Device Device { get; }
    public TransferCounter Counter { get; }
    public int Length => _length;

    public void Clear()
    {
        _length = 0;
        _device = null;
        foreach (var t in _typed.Values) t.Dispose();
        _typed.Clear();
    }

    // The uploaded buffer converted once per dtype: a segment is then one slice (a view).
    readonly Dictionary<ScalarType, Tensor> _typed = [];

    /// <summary>Makes room for n more values, so spans handed out after this stay valid.</summary>
    public void EnsureRoom(int n)
    {
        if (_length + n > _host.Length) Grow(_length + n);
    }

    void Grow(int needed)
    {
        var bigger = ArrayPool<double>.Shared.Rent(Math.Max(_host.Length * 2, needed));
        _host.AsSpan(0, _length).CopyTo(bigger);
        ArrayPool<double>.Shared.Return(_host);
        _host = bigger;
    }

    Span<double> Reserve(int n)
    {
        if (_device is not null) throw new InvalidOperationException("the step buffer was already uploaded; Clear it first");
        if (_length + n > _host.Length) Grow(_length + n);
        var span = _host.AsSpan(_length, n);
        _length += n;
        return span;
    }

    public Segment Add(ReadOnlySpan<double> values)
    {
        int at = _length;
        values.CopyTo(Reserve(values.Length));
        return new Segment(at, values.Length);
    }

    public Segment Add(ReadOnlySpan<long> values)
    {
        int at = _length;
        var span = Reserve(values.Length);
        for (int i = 0; i < values.Length; i++) span[i] = values[i];
        return new Segment(at, values.Length);
    }

    public Segment Add(ReadOnlySpan<float> values)
    {
        int at = _length;
        var span = Reserve(values.Length);
        for (int i = 0; i < values.Length; i++) span[i] = values[i];
        return new Segment(at, values.Length);
    }

    /// <summary>Room for n values filled in place by the caller. The span is valid until the
    /// buffer grows: reserve everything first with <see cref="EnsureRoom"/>.</summary>
    public Segment Add(int n, out Span<double> values)
    {
        int at = _length;
        values = Reserve(n);
        return new Segment(at, n);
    }

    /// <summary>The step's one host→device copy.</summary>
    public void Upload()
    {
        if (_device is not null) throw new InvalidOperationException("already uploaded");
        int n = Math.Max(_length, 1);
        if (Device.type == DeviceType.CPU)
        {
            // On the CPU "the device" is host memory: one copy out of the reusable array into a
            // fresh native tensor (a managed copy would be garbage every step, pinned while it lives).
            _device = empty(n, ScalarType.Float64);
            _host.AsSpan(0, n).CopyTo(new Span<double>(Modules.SimdGemv.HostData(_device), n));
        }
        else
        {
            if (_unsyncedUpload) cuda.synchronize(Device);   // the last copy may still read the staging
            if (_staging is null || _staging.size(0) < n)
            {
                _staging?.Dispose();
                using (var fresh = empty(Math.Max(n, 4096), ScalarType.Float64))
                    _staging = fresh.pin_memory().DetachFromDisposeScope();
            }
            _host.AsSpan(0, n).CopyTo(new Span<double>(Modules.SimdGemv.HostData(_staging), n));   // pinned host memory
            using var slice = _staging.narrow(0, 0, n);
            _device = slice.to(Device, non_blocking: true);
            _unsyncedUpload = true;
        }
        Counter.CountUpload();
    }

    /// <summary>Reads the step's results back (the one device→host copy) and marks the staging free.</summary>
    public double[] Download(Tensor values)
    {
        var result = Counter.Download(values);
        _unsyncedUpload = false;
        return result;
    }

    Tensor Slice(Segment s, ScalarType dtype)
    {
        var all = _device ?? throw new InvalidOperationException("Upload the step buffer first");
        if (dtype != ScalarType.Float64)
        {
            // Kept until the next Clear, outside any dispose scope: the forward's scope ends before the sampler's reads.
            if (!_typed.TryGetValue(dtype, out var typed)) _typed[dtype] = typed = all.to(dtype).DetachFromDisposeScope();
            all = typed;
        }
        return all.narrow(0, s.Offset, s.Length);
    }

    static Tensor Shaped(Tensor t, long[] shape) => shape.Length <= 1 ? t : t.view(shape);

    /// <summary>A segment as int64 (one shape: [length] when no shape is given).</summary>
    public Tensor Long(Segment s, params long[] shape) => Shaped(Slice(s, ScalarType.Int64), shape);
    public Tensor Float(Segment s, ScalarType dtype, params long[] shape) => Shaped(Slice(s, dtype), shape);

    public void Dispose()
    {
        Clear();
        _staging?.Dispose();
        if (_host.Length > 0) ArrayPool<double>.Shared.Return(_host);
        _host = [];
        _length = 0;
    }
}
