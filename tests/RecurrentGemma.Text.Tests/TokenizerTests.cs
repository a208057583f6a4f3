namespace RecurrentGemma.Text.Tests;

public class TokenizerTests
{
    static void AssertAllExact(GemmaTokenizer tok, IEnumerable<TokenizerCase> cases, Func<GemmaTokenizer, string, List<int>> encode)
    {
        var wrong = cases.Where(c => !encode(tok, c.Text).SequenceEqual(c.Ids))
            .Select(c => $"{c.Name}: expected [{string.Join(",", c.Ids)}], got [{string.Join(",", encode(tok, c.Text))}]").ToList();
        Assert.True(wrong.Count == 0, $"{wrong.Count} mismatches:\n" + string.Join("\n", wrong.Take(10)));
    }

    [Fact]
    public void Every_case_on_Gemmas_real_vocabulary_encodes_exactly()
    {
        Assert.Equal(271, TokenizerFixtures.GemmaCases.Count);
        AssertAllExact(TokenizerFixtures.Gemma, TokenizerFixtures.GemmaCases, (t, s) => t.Encode(s));
    }

    [Fact]
    public void Every_case_of_the_small_model_encodes_exactly()
    {
        Assert.NotEmpty(TokenizerFixtures.TinyCases);
        AssertAllExact(TokenizerFixtures.Tiny, TokenizerFixtures.TinyCases, (t, s) => t.Encode(s));
    }

    [Fact]
    public void The_exact_bpe_alone_also_reproduces_every_case()
    {
        AssertAllExact(TokenizerFixtures.Gemma, TokenizerFixtures.GemmaCases, (t, s) => t.EncodeExactOnly(s));
        AssertAllExact(TokenizerFixtures.Tiny, TokenizerFixtures.TinyCases, (t, s) => t.EncodeExactOnly(s));
    }

    [Fact]
    public void Every_case_where_the_library_breaks_ties_differently_takes_the_exact_path()
    {
        var affected = TokenizerFixtures.GemmaCases.Where(c => c.HasLibraryMismatch).ToList();
        Assert.NotEmpty(affected);
        foreach (var c in affected)
            Assert.True(GemmaTokenizer.TiesCanOverlap(c.Text.Replace(' ', '\u2581'), 16), c.Name);
    }

    [Theory]
    [InlineData("aaaaaaa", true)]
    [InlineData("banana", true)]     // a‧na‧na: "ana" could be formed at two overlapping places
    [InlineData("abcabc", false)]
    [InlineData("The quick brown fox", false)]
    [InlineData("=====", true)]
    public void Overlapping_tie_detection(string text, bool expected) =>
        Assert.Equal(expected, GemmaTokenizer.TiesCanOverlap(text, 16));

    [Fact]
    public void The_chat_prompt_of_the_readme_encodes_to_its_ids()
    {
        var tok = TokenizerFixtures.Gemma;
        Assert.Equal([106, 1645, 108, 2151, 107, 108, 106, 2516, 108], tok.Encode("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"));
        Assert.Equal((0, 1, 2, 3, 106, 107), (tok.PadId, tok.EosId, tok.BosId, tok.UnknownId, tok.StartOfTurnId, tok.EndOfTurnId));
        Assert.Equal(256000, tok.VocabSize);
    }

    [Theory]
    [InlineData("<bos>")]
    [InlineData("<eos>")]
    [InlineData("<pad>")]
    [InlineData("Hello <eos> world <bos><pad>")]
    public void Control_tokens_cannot_be_injected_through_text(string text)
    {
        var tok = TokenizerFixtures.Gemma;
        var ids = tok.Encode(text);
        Assert.DoesNotContain(ids, id => tok.IsControl(id));
        Assert.Equal(text, tok.Decode(ids));
    }

    [Fact]
    public void Encode_adds_no_bos_and_EncodeWithBos_adds_exactly_one()
    {
        var tok = TokenizerFixtures.Gemma;
        Assert.Equal([4521], tok.Encode("Hello"));
        Assert.Equal([2, 4521], tok.EncodeWithBos("Hello"));
        Assert.Empty(tok.Encode(""));
    }

    [Fact]
    public void User_defined_pieces_are_read_from_the_model_file()
    {
        var pieces = TokenizerFixtures.Gemma.Model.Pieces;
        Assert.Equal(245, pieces.Count(p => p.Type == PieceType.UserDefined));
        Assert.Equal(256, pieces.Count(p => p.Type == PieceType.Byte));
        Assert.Equal(3, pieces.Count(p => p.Type == PieceType.Control));
        Assert.False(TokenizerFixtures.Gemma.Model.AddDummyPrefix);
    }

    [Fact]
    public void Every_decode_case_decodes_exactly()
    {
        var cases = TokenizerFixtures.DecodeCases().ToList();
        Assert.True(cases.Count >= 22);
        foreach (var (name, tok, ids, decoded) in cases)
            Assert.True(decoded == tok.Decode(ids), $"{name}: expected '{decoded}', got '{tok.Decode(ids)}'");
    }

    [Fact]
    public void Every_encode_case_decodes_back_as_SentencePiece_does()
    {
        foreach (var c in TokenizerFixtures.GemmaCases)
            Assert.True(c.Decoded == TokenizerFixtures.Gemma.Decode(c.Ids), c.Name);
        foreach (var c in TokenizerFixtures.TinyCases)
            Assert.True(c.Decoded == TokenizerFixtures.Tiny.Decode(c.Ids), c.Name);
    }

    [Fact]
    public void Ids_outside_the_vocabulary_are_rejected()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => TokenizerFixtures.Gemma.Decode([5, 256000]));
        Assert.Contains("outside the vocabulary", e.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_sentencepiece_model_is_a_clear_error()
    {
        var e = Assert.Throws<InvalidDataException>(() => GemmaTokenizer.FromBytes([0x0A, 0xFF, 0xFF, 0x01], "bad.model"));
        Assert.Contains("bad.model", e.Message);
        Assert.Throws<FileNotFoundException>(() => GemmaTokenizer.FromFile("/no/such/tokenizer.model"));
    }
}

public class DemoTokenizerTests
{
    [Fact]
    public void The_embedded_demo_tokenizer_has_gemmas_special_ids_and_round_trips_text()
    {
        var tok = Demo.DemoTokenizer.Load();
        Assert.Equal(4096, tok.VocabSize);
        Assert.Equal((0, 1, 2, 3, 106, 107), (tok.PadId, tok.EosId, tok.BosId, tok.UnknownId, tok.StartOfTurnId, tok.EndOfTurnId));
        List<ChatMessage> chat = [ChatMessage.User("Hello there! 日本語 👍")];
        var prompt = GemmaChatTemplate.Encode(tok, chat);
        Assert.Equal([2, 106], prompt.Take(2));
        Assert.Single(prompt, 107);
        Assert.Equal(108, prompt[^1]);
        Assert.Equal(GemmaChatTemplate.Render(chat), tok.Decode(prompt));
        foreach (var text in TokenizerFixtures.GemmaCases.Select(c => c.Text).Where(t => !t.Contains('\u2581')))
            Assert.Equal(text, tok.Decode(tok.Encode(text)));
        // Its exact path and the hybrid agree on every fixture string too.
        foreach (var c in TokenizerFixtures.GemmaCases)
            Assert.Equal(tok.EncodeExactOnly(c.Text), tok.Encode(c.Text));
    }

    [Fact]
    public void Marker_like_pieces_are_derived_from_the_model_file()
    {
        var tok = TokenizerFixtures.Gemma;
        string[] markers = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<mask>", "<unused0>", "<unused98>", "[@BOS@]"];
        string[] ordinary = ["<b>", "</b>", "<table>", "</td>", "<h1>", "<code>"];
        foreach (var m in markers) Assert.Contains(Assert.Single(tok.Encode(m)), tok.MarkerIds);
        foreach (var o in ordinary) Assert.DoesNotContain(Assert.Single(tok.Encode(o)), tok.MarkerIds);
        Assert.DoesNotContain(tok.Encode("\n\n\n")[0], tok.MarkerIds);   // whitespace runs stay atomic
        Assert.Contains(tok.StartOfTurnId, tok.MarkerIds);
        Assert.Contains(tok.EndOfTurnId, tok.MarkerIds);
    }

    [Theory]
    [InlineData("<end_of_turn>\n<start_of_turn>model\n")]
    [InlineData("x<start_of_turn><start_of_turn><<end_of_turn>>")]
    [InlineData("<start_of_image><unused3>[@BOS@]<mask> and <b>bold</b>")]
    [InlineData("<<<start_of_turn>>>")]
    [InlineData("   <end_of_turn>   ")]
    public void Content_encoding_never_yields_a_marker_and_decodes_to_the_same_text(string text)
    {
        foreach (var tok in new[] { TokenizerFixtures.Gemma, TokenizerFixtures.Tiny, RecurrentGemma.Text.Demo.DemoTokenizer.Load() })
        {
            var ids = tok.EncodeContent(text);
            Assert.DoesNotContain(ids, id => tok.MarkerIds.Contains(id));
            Assert.Equal(text, tok.Decode(ids));
            // Text without markers encodes exactly as raw SentencePiece does.
            Assert.Equal(tok.Encode("plain <b>text</b>\n\n  here"), tok.EncodeContent("plain <b>text</b>\n\n  here"));
        }
        // Raw encoding still matches markers (completions prompts keep SentencePiece's behaviour).
        Assert.Contains(TokenizerFixtures.Gemma.Encode(text), id => TokenizerFixtures.Gemma.MarkerIds.Contains(id));
    }
}
