namespace RecurrentGemma.Model;

/// <summary>
/// Rows [Row, Row + Length) of a batch whose state slots are [Slot, Slot + Length): their part of
/// any per-slot pool is one narrow view, no gather. The engine hands out the lowest free slot and
/// orders decode rows by slot, so a batch is usually one run or a few.
/// </summary>
internal readonly record struct SlotRun(int Row, long Slot, int Length)
{
    public static SlotRun[] Of(long[] slots)
    {
        var runs = new List<SlotRun>();
        for (int i = 0; i < slots.Length;)
        {
            int j = i + 1;
            while (j < slots.Length && slots[j] == slots[j - 1] + 1) j++;
            runs.Add(new SlotRun(i, slots[i], j - i));
            i = j;
        }
        return [.. runs];
    }
}
