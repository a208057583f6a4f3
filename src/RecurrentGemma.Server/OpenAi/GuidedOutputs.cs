using System.Text.Json;
using RecurrentGemma.Inference.Constraints;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// vLLM's ways of asking for constrained output, beside OpenAI's response_format: the
/// structured_outputs object (json, choice, regex, json_object) and its older top-level names
/// (guided_json, guided_choice, guided_regex). Clients written for vLLM send them; ignoring them
/// would return free text where the caller parses JSON or matches one of its choices. At most
/// one way per request; grammar outputs are refused by name (this server compiles JSON Schemas,
/// choices and the regex subset of JSON Schema patterns, not EBNF grammars).
/// </summary>
internal static class GuidedOutputs
{
    /// <summary>The constraint the request asks for (null: free text), <paramref name="responseFormat"/> included.</summary>
    public static OutputFormat? Format(GenerationRequestBase r, OutputFormat? responseFormat)
    {
        var asked = new List<(string Param, Func<OutputFormat> Build)>();
        if (responseFormat is not null) asked.Add(("response_format", () => responseFormat));
        if (r.GuidedJson is { ValueKind: not JsonValueKind.Null } gj) asked.Add(("guided_json", () => Json(gj, "guided_json")));
        if (r.GuidedChoice is { } gc) asked.Add(("guided_choice", () => Choice(gc, "guided_choice")));
        if (r.GuidedRegex is not null) asked.Add(("guided_regex", () => Regex(r.GuidedRegex, "guided_regex")));
        if (r.GuidedGrammar is not null) asked.Add(("guided_grammar", () => throw Unsupported("guided_grammar")));
        if (r.StructuredOutputs is { } so)
        {
            if (so.Json is { ValueKind: not JsonValueKind.Null } j) asked.Add(("structured_outputs.json", () => Json(j, "structured_outputs.json")));
            if (so.Choice is { } c) asked.Add(("structured_outputs.choice", () => Choice(c, "structured_outputs.choice")));
            if (so.JsonObject == true) asked.Add(("structured_outputs.json_object", () => new OutputFormat(OutputFormatKind.JsonObject, Param: "structured_outputs.json_object")));
            if (so.Regex is not null) asked.Add(("structured_outputs.regex", () => Regex(so.Regex, "structured_outputs.regex")));
            if (so.Grammar is not null) asked.Add(("structured_outputs.grammar", () => throw Unsupported("structured_outputs.grammar")));
        }
        if (asked.Count > 1)
            throw ApiError.Invalid($"{asked[1].Param} and {asked[0].Param} both constrain the output; send one of them.", asked[1].Param);
        return asked.Count == 0 ? null : asked[0].Build();
    }

    /// <summary>A schema object (true: any value), or a string holding one (vLLM takes both).</summary>
    static OutputFormat Json(JsonElement value, string param)
    {
        var schema = value;
        if (value.ValueKind == JsonValueKind.String)
        {
            try { schema = JsonDocument.Parse(value.GetString()!).RootElement.Clone(); }
            catch (JsonException) { throw ApiError.Invalid($"{param} is a string that holds no JSON Schema (it is not valid JSON).", param); }
        }
        if (schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
            throw ApiError.Invalid($"{param} must be a JSON Schema object (or a string holding one).", param);
        // As vLLM enforces it: what the compiler supports is kept, other keywords are ignored.
        return new OutputFormat(OutputFormatKind.JsonSchema, schema, Strict: false, Param: param);
    }

    static OutputFormat Choice(List<string> choices, string param)
    {
        if (choices.Count == 0) throw ApiError.Invalid($"{param} must hold at least one string.", param);
        if (choices.Count > MaxChoices) throw ApiError.Invalid($"{param} may hold at most {MaxChoices} strings, got {choices.Count}.", param);
        for (int i = 0; i < choices.Count; i++)
        {
            if (string.IsNullOrEmpty(choices[i])) throw ApiError.Invalid($"{param}[{i}] must not be empty.", $"{param}[{i}]");
            if (choices[i].Length > MaxChoiceLength) throw ApiError.Invalid($"{param}[{i}] is longer than {MaxChoiceLength} characters.", $"{param}[{i}]");
        }
        return new OutputFormat(OutputFormatKind.Choice, Choices: choices, Param: param);
    }

    /// <summary>Raw text the whole expression matches (the compiler names what it cannot take).</summary>
    static OutputFormat Regex(string pattern, string param)
    {
        if (pattern.Length == 0) throw ApiError.Invalid($"{param} must not be empty.", param);
        if (pattern.Length > MaxChoiceLength) throw ApiError.Invalid($"{param} is longer than {MaxChoiceLength} characters.", param);
        return new OutputFormat(OutputFormatKind.Regex, Param: param, Pattern: pattern);
    }

    /// <summary>Bounds on a choice list, so that its grammar stays small (each string is a chain of byte rules).</summary>
    const int MaxChoices = 1000, MaxChoiceLength = 1000;

    static ApiError Unsupported(string param) =>
        ApiError.Invalid($"{param} is not supported: this server constrains output by a JSON Schema (json, guided_json, response_format), a list of choices (choice, guided_choice) or a regular expression (regex, guided_regex), not by a grammar.", param);
}
