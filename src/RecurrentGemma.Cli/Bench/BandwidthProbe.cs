using System.Diagnostics;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// Memory copy bandwidth at this moment (read + write bytes, as a copy counts them) on every
/// torch thread, best of a few copies. The default 128 MiB (beyond the caches) is cheap enough to
/// take before every measured step; the model table's figure copies 1 GiB.
/// </summary>
public sealed class BandwidthProbe : IDisposable
{
    readonly Tensor _from, _to;

    public BandwidthProbe(long bytes = 128L << 20)
    {
        _from = empty(bytes / 4, ScalarType.Float32).fill_(1);
        _to = empty(bytes / 4, ScalarType.Float32).fill_(2);
        _to.copy_(_from);
    }

    public double Measure(int copies = 2)
    {
        int threads = get_num_threads();
        set_num_threads(RecurrentGemma.Engine.ThreadCalibration.AllThreads);
        try
        {
            double best = double.MaxValue;
            for (int i = 0; i < copies; i++)
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
