using TorchSharp.Modules;
using static TorchSharp.torch;

namespace RecurrentGemma.Model.Modules;

/// <summary>
/// Real-Gated Linear Recurrent Unit (docs/model.md, "RG-LRU"):
///   i_t = σ(BlockDiag(v_t; G_in) + β_in),  r_t = σ(BlockDiag(v_t; G_rec) + β_rec)
///   log a_t = −8 · r_t ⊙ softplus(λ),   a_t = exp(log a_t)
///   h_t = ã_t ⊙ h_{t−1} + v_t ⊙ i_t ⊙ μ_t,   ã = a, μ = √(1−a²)  (at position 0: ã = 0, μ = 1)
/// The gates and the scan run in float32 and h is kept in float32 whatever the model dtype.
/// Both gates are one batched matmul over blocks with weights [H, 2·L/H, L/H] (out × in, the
/// layout the CPU step kernel reads) and the constant −8·softplus(λ) is derived once
/// after loading (<see cref="Prepare"/>). A decode step of up to 8 rows on the CPU runs inside
/// one fused pass of its block (<see cref="RecurrentStepRows"/>) where the small-batch kernels are in use.
/// Elsewhere on the CPU the gates' element-wise part and the recurrence run as one fused pass
/// per block over the chunk (<see cref="RgLruScan"/>); on other devices a chunk runs a parallel
/// (Hillis–Steele) scan: log₂T rounds of whole-tensor ops instead of T steps of small ones.
/// </summary>
public sealed class RgLru : nn.Module
{
    readonly Parameter recurrent_param;        // λ [L]
    readonly Parameter input_gate_weight;      // [H, L/H, L/H], used as [in, out]
    readonly Parameter input_gate_bias;        // [H, L/H]
    readonly Parameter recurrent_gate_weight;  // [H, L/H, L/H]
    readonly Parameter recurrent_gate_bias;    // [H, L/H]
    readonly int _blocks, _blockWidth;
    Tensor? _gates, _gateBias, _negScale;      // [H, 2bw, bw], [H, 2bw], [H, bw] float32
    Tensor? _stepGates;                        // [H, 2bw, bw] bf16 for a bf16 model (else null: _gates); 2B: 2.6 MB a layer beside _gates' 5.2

    /// <summary>How a chunk runs the recurrence (tests and benchmarks pin one; the server keeps Auto).</summary>
    public static RgLruScanPath Scan { get; set; } = RgLruScanPath.Auto;

    public RgLru(int width, int blocks, ScalarType dtype, Device device) : base(nameof(RgLru))
    {
        int bw = width / blocks;
        recurrent_param = Param.Empty([width], dtype, device);
        input_gate_weight = Param.Empty([blocks, bw, bw], dtype, device);
        input_gate_bias = Param.Empty([blocks, bw], dtype, device);
        recurrent_gate_weight = Param.Empty([blocks, bw, bw], dtype, device);
        recurrent_gate_bias = Param.Empty([blocks, bw], dtype, device);
        _blocks = blocks;
        _blockWidth = bw;
        RegisterComponents();
    }

    internal void Prepare()
    {
        _gates?.Dispose(); _gateBias?.Dispose(); _negScale?.Dispose(); _stepGates?.Dispose(); _stepGates = null;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var both = cat([input_gate_weight, recurrent_gate_weight], -1);
        _gates = both.to(ScalarType.Float32).transpose(1, 2).contiguous().DetachFromDisposeScope();
        // The CPU step kernel streams a bf16 model's gates in bf16 (half the bytes; its bf16 loop takes pairs of columns).
        if (both.dtype == ScalarType.BFloat16 && _blockWidth % 2 == 0) _stepGates = both.transpose(1, 2).contiguous().DetachFromDisposeScope();
        _gateBias = cat([input_gate_bias, recurrent_gate_bias], -1).to(ScalarType.Float32).DetachFromDisposeScope();
        // softplus(λ) = max(λ, 0) + log(1 + exp(−|λ|)), written out: TorchSharp's softplus makes temporary Scalars.
        var lambda = recurrent_param.to(ScalarType.Float32);
        var softplus = lambda.clamp_min(Scalars.Zero).add_(lambda.abs().neg_().exp_().log1p_(), Scalars.One);
        _negScale = softplus.mul_(Scalars.Of(-8.0)).view(_blocks, _blockWidth).DetachFromDisposeScope();
    }

    /// <summary>The gate weights the CPU step kernel reads: [H, 2bw, bw], bf16 for a bf16 model, else float32.</summary>
    internal Tensor StepGates => _stepGates ?? _gates ?? throw new InvalidOperationException("the model was not prepared after loading its weights");
    internal Tensor GateBias => _gateBias!;
    internal Tensor NegScale => _negScale!;

    /// <param name="v">[B, T, L] conv outputs ([B, L] for a decode step).</param>
    /// <param name="h0">[B, 1, H, L/H] float32 state before the chunk.</param>
    /// <param name="hLast">[B, 1, H, L/H] float32 state after each row's last valid token.</param>
    /// <returns>[B, T, L] float32 outputs (o_t = h_t).</returns>
    internal Tensor Forward(Tensor v, ForwardBatch batch, Tensor h0, out Tensor hLast)
    {
        long b = batch.B, t = batch.T, l = v.size(-1);
        int bw = _blockWidth;
        var v32 = (v.dtype == ScalarType.Float32 ? v : v.to(ScalarType.Float32)).view(b, t, _blocks, bw);
        var g = einsum("bthi,hji->bthj", v32, _gates!);   // [B, T, H, 2bw], before the bias
        if (Scan is (RgLruScanPath.Auto or RgLruScanPath.Fused) && RgLruScan.Applies(v32, h0))
        {
            var o = RgLruScan.Forward(g.is_contiguous() ? g : g.contiguous(), v32, h0, _gateBias!, _negScale!,
                batch.GateKeep, batch.GatePad, batch.GateReset, out hLast);
            return o.view(b, t, l);
        }
        g.add_(_gateBias!, Scalars.One).sigmoid_();
        var gateX = g.narrow(-1, 0, bw);
        var logA = g.narrow(-1, bw, bw).mul_(_negScale!);
        var a = logA.exp();
        // √(1 − exp(2·log a)) as the reference writes it, in place on logA (a view of g, not read again).
        var multiplier = logA.mul_(Scalars.Two).exp_().neg_().add_(Scalars.One, Scalars.One).sqrt_();
        if (batch.GateKeep is { } keep)
        {
            // A new document forgets the past and its input is not scaled (ã = 0, μ = 1);
            // padding after a row's last token leaves h untouched (ã = 1, x = 0).
            a.mul_(keep).add_(batch.GatePad!, Scalars.One);
            multiplier.mul_(keep).add_(batch.GateReset!, Scalars.One);
        }
        var x = (v32 * gateX).mul_(multiplier);

        Tensor h;
        if (t == 1) h = x.addcmul_(a, h0, Scalars.One);                     // x is this step's own tensor
        else if (Scan != RgLruScanPath.Sequential) h = ParallelScan(x, a).addcmul_(a, h0, Scalars.One);   // h_t = x*_t + A_t·h0
        else h = Sequential(x, a, h0);
        hLast = t == 1 ? h : h.narrow(1, t - 1, 1);   // padding carries the last valid h to T−1
        return h.view(b, t, l);
    }

    /// <summary>
    /// Inclusive scan of h_t = a_t·h_{t−1} + x_t from h = 0, in place over log₂T rounds: after the
    /// round with offset d, (a_t, x_t) compose the last 2d steps. Returns x (the scanned states);
    /// a becomes the cumulative product A_t, which carries h0 in.
    /// </summary>
    static Tensor ParallelScan(Tensor x, Tensor a)
    {
        long t = x.size(1);
        for (long d = 1; d < t; d *= 2)
        {
            using var scope = NewDisposeScope();
            var xs = addcmul(x.narrow(1, d, t - d), a.narrow(1, d, t - d), x.narrow(1, 0, t - d), Scalars.One);
            var As = a.narrow(1, d, t - d) * a.narrow(1, 0, t - d);
            x.narrow(1, d, t - d).copy_(xs);
            a.narrow(1, d, t - d).copy_(As);
        }
        return x;
    }

    /// <summary>The definition, a left-to-right loop (kept to test the scan against).</summary>
    static Tensor Sequential(Tensor x, Tensor a, Tensor h0)
    {
        long t = x.size(1);
        var outputs = empty_like(x);
        var h = h0.select(1, 0);
        for (long i = 0; i < t; i++)
        {
            h = addcmul(x.select(1, i), a.select(1, i), h, Scalars.One);
            outputs.select(1, i).copy_(h);
        }
        return outputs;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _gates?.Dispose(); _gateBias?.Dispose(); _negScale?.Dispose(); _stepGates?.Dispose(); }
        base.Dispose(disposing);
    }
}

/// <summary>The RG-LRU's path over a chunk.</summary>
public enum RgLruScanPath
{
    /// <summary>The fused pass on the CPU (<see cref="RgLruScan"/>), the parallel scan elsewhere.</summary>
    Auto,
    /// <summary>The fused CPU pass wherever its tensors allow (else the parallel scan).</summary>
    Fused,
    /// <summary>Whole-tensor ops with the parallel scan over log₂T rounds (the GPU path).</summary>
    Parallel,
    /// <summary>Whole-tensor ops with the left-to-right loop, the definition (tests).</summary>
    Sequential,
}
