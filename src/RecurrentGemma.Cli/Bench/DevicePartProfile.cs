using System.Diagnostics;
using System.Globalization;
using System.Text;
using RecurrentGemma.Model;
using static TorchSharp.torch;

namespace RecurrentGemma.Cli.Bench;

/// <summary>
/// Where a 2B decode forward's time goes on an asynchronous device (a GPU), per part and batch.
/// The engine's own split cannot say: on a GPU the forward call returns once its kernels are
/// queued, so its "forward" is the host's launch time and the device's remaining work is waited
/// for by the step's one download, which ends the sampler's share. Here each part (embedding, each layer,
/// the head) is followed by a device synchronisation, so a part's time is its launches or its
/// device work, whichever ends later; a plain step synchronised once at the end is timed beside it
/// (the parts' sum exceeds it by the overlap the syncs take away). The host's plan and upload of
/// the step's inputs (one step buffer kept across steps, as the engine keeps it) are a part of
/// their own. Weights are left uninitialised: the time of a dense op does not depend on its values.
/// </summary>
public sealed class DevicePartProfile(GriffinConfig config, ScalarType dtype, Device device, int steps, TextWriter progress)
{
    public string Run(IReadOnlyList<int> batches)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        using var model = new GriffinForCausalLM(config, dtype, device);
        model.Prepare();
        sb.AppendLine(ci, $"Decode forward of the 2B shape on {device} ({(dtype == ScalarType.BFloat16 ? "bf16" : "f32")}, after a 4-token prompt per row; median (min–max) of {steps} steps, ms; the parts' sum adds medians): a plain step synchronised once at the end, then the same step with a synchronisation after every part.");
        sb.AppendLine();
        sb.AppendLine("| rows | plain step | with syncs: plan + upload (host) | embedding | recurrent layers (sum) | attention layers (sum) | final norm + head | parts' sum |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        using var buffer = new StepBuffer(device);
        foreach (int b in batches)
        {
            using var state = model.CreateState(b);
            long[] slots = [.. Enumerable.Range(0, b).Select(i => (long)i)];
            using (model.Forward([.. Enumerable.Range(0, b).Select(i => (IReadOnlyList<long>)[2L, 3 + i % 200, 4, 5])], state, slots)) { }
            var single = Enumerable.Range(0, b).Select(i => (IReadOnlyList<long>)[6L + i % 200]).ToArray();
            Sync();
            var plain = new List<double>();
            var parts = new Dictionary<string, List<double>> { ["plan"] = [], ["embed"] = [], ["recurrent"] = [], ["attention"] = [], ["head"] = [] };
            ForwardPlan Planned()
            {
                buffer.Clear();
                var plan = model.Plan(buffer, state, single, slots);
                buffer.Upload();
                return plan;
            }
            for (int s = 0; s < steps; s++)
            {
                var clock = Stopwatch.StartNew();
                using (model.Forward(Planned())) { }
                Sync();
                plain.Add(clock.Elapsed.TotalMilliseconds);

                var sums = new Dictionary<string, double> { ["plan"] = 0, ["embed"] = 0, ["recurrent"] = 0, ["attention"] = 0, ["head"] = 0 };
                clock.Restart();
                var planned = Planned();
                Sync();
                sums["plan"] = clock.Elapsed.TotalMilliseconds;
                clock.Restart();
                model.PartDone = name =>
                {
                    Sync();
                    string kind = name.StartsWith("block", StringComparison.Ordinal)
                        ? config.KindOf(int.Parse(name.AsSpan(5), ci)) == BlockKind.Recurrent ? "recurrent" : "attention"
                        : name;
                    sums[kind] += clock.Elapsed.TotalMilliseconds;
                    clock.Restart();
                };
                try { using (model.Forward(planned)) { } }
                finally { model.PartDone = null; }
                foreach (var (k, v) in sums) parts[k].Add(v);
            }
            double sum = parts.Values.Sum(p => Spread.Of(p).Median);
            string F(List<double> xs) => Spread.Of(xs).Format("F2");
            sb.AppendLine(ci, $"| {b} | {F(plain)} | {F(parts["plan"])} | {F(parts["embed"])} | {F(parts["recurrent"])} | {F(parts["attention"])} | {F(parts["head"])} | {sum:F2} |");
            progress.WriteLine($"[bench] device parts, {b} rows: plain {Spread.Of(plain).Median:F2} ms, parts {sum:F2} ms");
        }
        return sb.ToString();
    }

    void Sync()
    {
        if (device.type == TorchSharp.DeviceType.CUDA) cuda.synchronize(device);
    }
}
