using static TorchSharp.torch;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// What a step leaves to the .NET garbage collector. On a GPU the host thread that issues the
/// kernels is the step's critical path, so garbage per step becomes collections in the middle
/// of it. These bound the managed bytes the step's own pieces allocate, on the calling thread
/// (GC.GetAllocatedBytesForCurrentThread is exact and sees no other test).
/// </summary>
public class ManagedAllocationTests
{
    static long AllocatedBy(Action action)
    {
        action();   // warm: the JIT, the array pool's first rent, static tables
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void Uploading_a_step_does_not_copy_it_into_a_managed_array()
    {
        const int n = 100_000;   // 800 kB of values: a managed copy would show at once
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = i * 0.5;
        using var buffer = new StepBuffer(GriffinFixture.TestDevice);
        Tensor? uploaded = null;
        long bytes = AllocatedBy(() =>
        {
            buffer.Clear();
            buffer.Add(values);
            buffer.Upload();
            uploaded = buffer.Float(new StepBuffer.Segment(0, n), ScalarType.Float64);
        });
        Assert.True(bytes < 16 * 1024, $"an upload of {n} values allocated {bytes} managed bytes");
        // ...and the device copy holds the values.
        using var host = uploaded!.cpu();
        Assert.Equal(values[1], host[1].item<double>());
        Assert.Equal(values[n - 1], host[n - 1].item<double>());
    }

    [Fact]
    public void A_step_buffer_made_per_call_rents_its_host_array()
    {
        long bytes = AllocatedBy(() =>
        {
            using var buffer = new StepBuffer(GriffinFixture.TestDevice);
            buffer.Add([1.0, 2.0, 3.0]);
        });
        // A fresh 4096-value array would be 32 kB.
        Assert.True(bytes < 4 * 1024, $"making and dropping a step buffer allocated {bytes} managed bytes");
    }

    [Fact]
    public void A_step_buffer_that_grows_keeps_what_it_held()
    {
        using var buffer = new StepBuffer(CPU);
        var first = buffer.Add([7.0, 8.0]);
        var big = buffer.Add(new double[10_000]);   // past the first rented array
        buffer.Upload();
        using var host = buffer.Float(first, ScalarType.Float64).cpu();
        Assert.Equal([7.0, 8.0], host.data<double>().ToArray());
        Assert.Equal(10_002, buffer.Length);
        Assert.Equal(10_000, big.Length);
    }

    [Fact]
    public void A_decode_forward_allocates_little_beyond_torchs_own_handles()
    {
        var fx = GriffinFixture.Get("tiny");
        using var model = fx.LoadModel();
        using var state = model.CreateState(1);
        using (model.Forward([[2L, 3, 4]], state, [0])) { }
        long created0 = TorchSharp.DisposeScopeManager.Statistics.CreatedInScopeCount + TorchSharp.DisposeScopeManager.Statistics.CreatedOutsideScopeCount;
        long step = 5;
        long bytes = AllocatedBy(() => { using (model.Forward([[step++]], state, [0])) { } });
        long ops = (TorchSharp.DisposeScopeManager.Statistics.CreatedInScopeCount + TorchSharp.DisposeScopeManager.Statistics.CreatedOutsideScopeCount - created0) / 2;
        // Each torch op costs a 48-byte handle plus its place in a dispose scope's set. Reading a
        // tensor's .shape (a fresh array and a marshalling delegate, ~150 bytes) on the step's
        // paths, or a managed copy of the step's buffer, took this to ~400 bytes per op.
        Assert.True(bytes < 200 * ops, $"a decode forward of {ops} ops allocated {bytes} managed bytes ({(double)bytes / ops:F0} per op)");
    }
}
