namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// A set of numerals as a trie of rules, one per prefix: the matcher follows one path per prefix
/// rather than thousands of literals at once (the listed multiples of a bounded multipleOf).
/// </summary>
internal static class NumeralTrie
{
    public static int Of(ByteGrammar g, IEnumerable<string> numerals)
    {
        var root = new Node();
        foreach (var numeral in numerals)
        {
            var node = root;
            foreach (char c in numeral)
                node = node.Next.TryGetValue(c, out var child) ? child : node.Next[c] = new Node();
            node.End = true;
        }
        return Rule(g, root);
    }

    sealed class Node
    {
        public bool End;
        public readonly SortedDictionary<char, Node> Next = [];
    }

    static int Rule(ByteGrammar g, Node node)
    {
        var alternatives = new List<int[]>();
        if (node.End) alternatives.Add([]);
        foreach (var (c, child) in node.Next) alternatives.Add([g.Byte((byte)c), Rule(g, child)]);
        return g.Rule([.. alternatives]);
    }
}
