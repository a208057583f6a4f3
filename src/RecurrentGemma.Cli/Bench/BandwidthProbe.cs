using System.Diagnostics;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// Memory copy bandwidth at this moment (read + write bytes, as <see cref="ModelBenchmark.CopyBandwidth"/>
/// counts them), cheap enough to take before every measured step: one 128 MiB copy (beyond the
/// caches) on every torch thread, best of two.
/// </summary>
public sealed class BandwidthProbe : IDisposable
{
    readonly Tensor _from = empty(32L << 20, ScalarType.Float32).fill_(1);
    readonly Tensor _to = empty(32L << 20, ScalarType.Float32).fill_(2);

    public BandwidthProbe() => _to.copy_(_from);

    public double Measure()
    {
        int threads = get_num_threads();
        set_num_threads(RecurrentGemma.Engine.ThreadCalibration.AllThreads);
        try
        {
            double best = double.MaxValue;
            for (int i = 0; i < 2; i++)
            {
                var clock = Stopwatch.StartNew();
                _to.copy_(_from);
                best = Math.Min(best, clock.Elapsed.TotalSeconds);
            }
            return 2.0 * _from.numel() * 4 / best;
        }
        finally { set_num_threads(threads); }
    }

    public void Dispose()
    {
        _from.Dispose();
        _to.Dispose();
    }
}
