namespace RecurrentGemma.Text.Tests;

public class StopSequenceMatcherTests
{
    /// <summary>Feeds deltas; returns everything emitted (Flush included) and the stop that matched.</summary>
    static (string Text, string? Stop) Run(string[] stops, params string[] deltas)
    {
        var m = new StopSequenceMatcher(stops);
        var text = "";
        string? stop = null;
        foreach (var delta in deltas)
        {
            var r = m.Push(delta);
            text += r.Emit;
            if (r.MatchedStop is not null) { stop = r.MatchedStop; break; }
        }
        return (text + m.Flush(), stop);
    }

    [Theory]
    [InlineData(new[] { "Hello", " wor", "ld. Bye" }, "Hello")]                       // stop over 2 tokens: " world"
    [InlineData(new[] { "Hello", " ", "w", "orld" }, "Hello")]                       // over 4 tokens
    [InlineData(new[] { "Hello wo", "rld!" }, "Hello")]
    public void A_stop_split_over_tokens_is_found_and_never_emitted(string[] deltas, string expected)
    {
        var (text, stop) = Run([" world"], deltas);
        Assert.Equal(expected, text);
        Assert.Equal(" world", stop);
    }

    [Fact]
    public void Asked_for_the_stop_string_ends_the_text_and_nothing_after_it_does()
    {
        var m = new StopSequenceMatcher([" world", "xyz"], includeStop: true);
        Assert.Equal("Hello", m.Push("Hello wo").Emit);
        var r = m.Push("rld. Bye");
        Assert.Equal(" world", r.Emit);
        Assert.Equal(" world", r.MatchedStop);
        Assert.Equal("", m.Push("more").Emit);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void Text_that_may_start_a_stop_is_held_then_released()
    {
        var m = new StopSequenceMatcher(["STOP"]);
        Assert.Equal("abc ", m.Push("abc ST").Emit);
        Assert.Equal("ST", m.Held);
        Assert.Equal("STuff", m.Push("uff").Emit);        // no longer a prefix: released
        Assert.Equal("", m.Held);
        Assert.Equal("", m.Push("S").Emit);
        Assert.Equal("S", m.Flush());                     // held prefix released at the end
    }

    [Fact]
    public void A_stop_at_the_very_start_emits_nothing()
    {
        var (text, stop) = Run(["###"], "###", " more");
        Assert.Equal("", text);
        Assert.Equal("###", stop);
    }

    [Fact]
    public void Overlapping_stops_the_earliest_wins_and_on_a_tie_the_longest()
    {
        Assert.Equal(("x", "ab"), Run(["ab", "bc"], "xa", "bc"));
        Assert.Equal(("x", "abc"), Run(["ab", "abc"], "xabc"));
        // "aab": the held "a" must still allow a match that starts one character later.
        Assert.Equal(("a", "ab"), Run(["ab"], "a", "a", "b"));
    }

    [Fact]
    public void Stops_inside_multi_byte_characters_match_on_whole_characters()
    {
        // The detokenizer only ever emits whole characters; a stop made of CJK or emoji spans tokens.
        Assert.Equal(("前", "日本"), Run(["日本"], "前", "日", "本語"));
        Assert.Equal(("ok ", "👍🏽"), Run(["👍🏽"], "ok ", "👍", "🏽!"));
    }

    [Fact]
    public void More_than_four_stops_or_an_empty_stop_is_an_error()
    {
        Assert.Contains("at most 4", Assert.Throws<ArgumentException>(() => new StopSequenceMatcher(["a", "b", "c", "d", "e"])).Message);
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => new StopSequenceMatcher([""])).Message);
    }

    [Fact]
    public void Without_stops_everything_passes_through()
    {
        Assert.Equal(("abc", null), Run([], "a", "b", "c"));
    }
}
