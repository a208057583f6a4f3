using static RecurrentGemma.Engine.Tests.EngineHarness;

namespace RecurrentGemma.Engine.Tests;

/// <summary>A constrained row's mask applies to that row only, step after step, in a batch with free
/// rows, and a later batch of free rows is never masked by what an earlier one wrote.</summary>
public class ConstraintBatchTests
{
    static readonly int[] Prompt = Ids("tiny", "d", "prompt");

    /// <summary>Allows one id only (a cycle of two ids, so consecutive masks differ).</summary>
    sealed class Only(int a, int b, int vocab) : ITokenConstraint
    {
        int _step;
        public ulong[] Allowed()
        {
            var mask = new ulong[(vocab + 63) / 64];
            int id = _step % 2 == 0 ? a : b;
            mask[id >> 6] |= 1UL << (id & 63);
            return mask;
        }
        public bool Advance(int tokenId) { bool ok = tokenId == (_step % 2 == 0 ? a : b); _step++; return ok; }
        public bool MustStop => false;
        public ITokenConstraint Fork() => new Only(a, b, vocab) { _step = _step };
    }

    [Fact]
    public async Task Masks_apply_to_their_own_rows_only()
    {
        await using var engine = NewEngine();
        int vocab = FixtureModel().Config.VocabSize;
        await using var alone = NewEngine();
        var expected = await Run(alone, Greedy([.. Prompt, 3], 8));

        for (int round = 0; round < 2; round++)
        {
            var constrained = engine.Submit(Greedy(Prompt, 8) with { Constraint = new Only(5, 9, vocab) });
            var free = engine.Submit(Greedy([.. Prompt, 3], 8));
            var c = await Collect(constrained);
            var f = await Collect(free);
            Assert.Equal([5, 9, 5, 9, 5, 9, 5, 9], c.Tokens[0]);
            Assert.Equal(expected.Tokens[0], f.Tokens[0]);   // the free row next to it was not masked
        }
        // Free rows alone after constrained ones: nothing stale.
        Assert.Equal(expected.Tokens[0], (await Run(engine, Greedy([.. Prompt, 3], 8))).Tokens[0]);
    }
}
