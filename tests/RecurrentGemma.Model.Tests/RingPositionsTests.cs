using RecurrentGemma.Model;

namespace RecurrentGemma.Model.Tests;

/// <summary>
/// The attention ring's key positions, which the host fills for every row and every window slot of
/// a step, against the definition they are written from: slot s holds the newest τ &lt; start with
/// τ ≡ s (mod W), none where that τ &lt; 0.
/// </summary>
public class RingPositionsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(2048)]
    public void Each_slot_holds_the_newest_earlier_position_congruent_to_it(int w)
    {
        var got = new double[w];
        foreach (long start in Enumerable.Range(0, 3 * w + 6).Select(x => (long)x).Append(1_000_003L).Append((long)w * 977 + 5))
        {
            ForwardPlan.RingPositions(got, start, w);
            for (int s = 0; s < w; s++)
            {
                long last = start - 1;
                long tau = last - ((last - s) % w + w) % w;
                double want = tau >= 0 ? tau : -(1L << 40);
                Assert.True(want == got[s], $"W={w}, start={start}, slot {s}: {got[s]}, want {want}");
            }
        }
    }
}
