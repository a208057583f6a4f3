namespace RecurrentGemma.Text.Tests;

public class IncrementalDetokenizerTests
{
    /// <summary>Every fixture string, encoded and fed back one id at a time.</summary>
    [Fact]
    public void Streaming_every_fixture_string_id_by_id_reassembles_the_full_decode()
    {
        foreach (var (tok, cases) in new[] { (TokenizerFixtures.Gemma, TokenizerFixtures.GemmaCases), (TokenizerFixtures.Tiny, TokenizerFixtures.TinyCases) })
            foreach (var c in cases)
            {
                var ids = tok.Encode(c.Text);
                var d = tok.CreateDetokenizer();
                var chunks = ids.Select(d.Push).Append(d.Flush()).ToList();
                Assert.True(string.Concat(chunks) == tok.Decode(ids), c.Name);
                foreach (var chunk in chunks)
                {
                    // Never half a character: no lone surrogate, no U+FFFD the full text lacks.
                    Assert.True(!chunk.Contains('\uFFFD') || c.Decoded.Contains('\uFFFD'), $"{c.Name}: U+FFFD in '{chunk}'");
                    Assert.True(chunk.Length == 0 || (!char.IsHighSurrogate(chunk[^1]) && !char.IsLowSurrogate(chunk[0])), $"{c.Name}: split surrogate");
                }
            }
    }

    [Fact]
    public void Byte_pieces_are_held_until_the_character_is_complete()
    {
        var tok = TokenizerFixtures.Gemma;
        var d = tok.CreateDetokenizer();
        Assert.Equal("", d.Push(445));          // 0xE4
        Assert.True(d.HasPendingBytes);
        Assert.Equal("", d.Push(401));          // 0xB8
        Assert.Equal("中", d.Push(390));        // 0xAD completes U+4E2D
        Assert.False(d.HasPendingBytes);
    }

    [Fact]
    public void An_incomplete_character_becomes_one_replacement_per_byte_only_when_it_can_no_longer_complete()
    {
        var tok = TokenizerFixtures.Gemma;
        var d = tok.CreateDetokenizer();
        Assert.Equal("", d.Push(445));
        Assert.Equal("", d.Push(401));
        Assert.Equal("\uFFFD\uFFFDHello", d.Push(4521));   // a text piece ends the byte run
        d = tok.CreateDetokenizer();
        d.Push(445);
        Assert.Equal("\uFFFD", d.Flush());                  // end of stream
    }

    [Fact]
    public void Control_ids_print_nothing_and_unknown_prints_the_surface()
    {
        var tok = TokenizerFixtures.Gemma;
        var d = tok.CreateDetokenizer();
        Assert.Equal("", d.Push(2));
        Assert.Equal("Hello", d.Push(4521));
        Assert.Equal(" \u2047 ", d.Push(3));
        Assert.Equal("", d.Push(1));
    }
}
