using System.Text.Json;
using RecurrentGemma.Text.Grammar;
using static RecurrentGemma.Text.Tests.SchemaTesting;

namespace RecurrentGemma.Text.Tests;

/// <summary>allOf of object schemas (inheritance as generators write it) merged into one object.</summary>
public class AllOfTests
{
    const string Base = "\"$defs\":{\"Base\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":0},\"kind\":{\"enum\":[\"a\",\"b\"]}},\"required\":[\"id\"]}}";

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Members_merge_their_properties_and_required(bool strict)
    {
        var m = Compile("{" + Base + ""","allOf":[{"$ref":"#/$defs/Base"},{"type":"object","properties":{"name":{"type":"string","maxLength":4}},"required":["name"]}]}""", strict);
        Assert.True(Accepts(m, """{"id":3,"name":"ab"}"""));
        Assert.True(Accepts(m, """{"id":0,"kind":"b","name":""}"""));
        Assert.False(Accepts(m, """{"name":"ab"}"""));             // Base requires id
        Assert.False(Accepts(m, """{"id":3}"""));                  // the second member requires name
        Assert.False(Accepts(m, """{"id":-1,"name":"ab"}"""));     // Base's id schema holds
        Assert.False(Accepts(m, """{"id":1,"name":"abcde"}"""));
    }

    [Fact]
    public void The_parents_own_properties_count_as_a_member()
    {
        var m = Compile("{" + Base + ""","allOf":[{"$ref":"#/$defs/Base"}],"type":"object","properties":{"extra":{"type":"boolean"}},"required":["extra"]}""", strict: true);
        Assert.True(Accepts(m, """{"id":1,"extra":true}"""));
        Assert.False(Accepts(m, """{"id":1}"""));
        Assert.False(Accepts(m, """{"extra":true}"""));
    }

    [Fact]
    public void A_closed_member_allows_only_its_own_properties()
    {
        // The second member lists name but the closed first does not: name is never written.
        var m = Compile("""{"allOf":[{"type":"object","properties":{"id":{"type":"integer"},"tag":{"type":"string","maxLength":2}},"additionalProperties":false},{"properties":{"name":{"type":"string"},"tag":{"type":"string","maxLength":2}}}]}""", strict: true);
        Assert.True(Accepts(m, """{"id":1,"tag":"x"}"""));
        Assert.False(Accepts(m, """{"id":1,"name":"x"}"""));
        // Required by one member, forbidden by a closed other: no document.
        Assert.Throws<GrammarException>(() => Compile("""{"allOf":[{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":false},{"properties":{"name":{"type":"string"}},"required":["name"]}]}""", strict: false));
    }

    [Theory]
    [InlineData("""{"allOf":[{"type":"object","properties":{"a":{"type":"integer"}}},{"properties":{"a":{"type":"string"}}}]}""")]   // one property, two schemas
    [InlineData("""{"allOf":[{"type":"string"},{"minLength":2}]}""")]                                                                  // not objects
    [InlineData("""{"allOf":[{"type":"object","properties":{"a":{}}},{"minProperties":1}]}""")]                                         // a keyword not merged
    public void What_does_not_merge_is_refused_in_strict_mode(string schema)
    {
        Assert.EndsWith("allOf", Assert.Throws<GrammarException>(() => Compile(schema, strict: true)).Path);
        Compile(schema, strict: false);   // without strict, allOf is left out as before
    }
}
