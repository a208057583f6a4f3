using System.Text.Json;
using RecurrentGemma.Engine;
using RecurrentGemma.Inference;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>Limits that validation needs from configuration and the served model.</summary>
public sealed record ValidationLimits(string ModelId, int VocabSize, int MaxNewTokens, int DefaultMaxTokens, int MaxChoices, int MaxPrompts = 64, int MaxTools = 128);

/// <summary>A validated request, protocol-free, plus how to answer it.</summary>
/// <param name="Generations">One per prompt.</param>
/// <param name="Stream">Answer as server-sent events.</param>
/// <param name="IncludeUsage">End the stream with a usage chunk.</param>
/// <param name="ContinuousUsage">Every chunk carries the usage so far (vLLM's continuous_usage_stats).</param>
/// <param name="ReturnTokenIds">Answer with prompt_token_ids and each choice's token_ids (vLLM's return_token_ids).</param>
/// <param name="ServiceTier">The tier the request runs in, as the answer reports it (default, flex or priority).</param>
/// <param name="Returned">choices returned per prompt: n, where best_of generated more (then ranked by <see cref="CompletionsEndpoint"/>).</param>
/// <param name="ShowLogprobs">whether the client asked for logprobs (best_of asks the engine for them to rank by).</param>
public sealed record ValidatedRequest(IReadOnlyList<TextGenerationRequest> Generations, bool Stream, bool IncludeUsage,
    bool ContinuousUsage = false, bool ReturnTokenIds = false, string ServiceTier = "default", int? Returned = null, bool? ShowLogprobs = null);

/// <summary>
/// Checks every OpenAI field against its documented range and maps the request to
/// <see cref="TextGenerationRequest"/>s. Each failure is a 400 naming the field and its limit.
/// Fields we cannot honour (tools, JSON mode, suffix) are refused, never silently ignored.
/// </summary>
public static class RequestValidation
{
    public static ValidatedRequest Chat(ChatCompletionRequest r, ValidationLimits limits, string? headerSession, string? owner)
    {
        CheckModel(r.Model, limits);
        NoBeamSearch(r);
        // What this server cannot do is refused, not ignored: an answer without the audio or the
        // web search a client asked for would look like success.
        if (r.Modalities?.FirstOrDefault(m => m != "text") is { } modality)
            throw ApiError.Invalid($"modalities holds '{modality}': this model writes text only.", "modalities");
        if (r.Audio is { ValueKind: not JsonValueKind.Null }) throw ApiError.Invalid("audio output is not supported: this model writes text only.", "audio");
        if (r.WebSearchOptions is { ValueKind: not JsonValueKind.Null })
            throw ApiError.Invalid("web search is not supported: this server runs only the function tools a request declares.", "web_search_options");
        var tools = ToolValidation.Tools(r, limits);
        var format = GuidedOutputs.Format(r, Format(r.ResponseFormat));
        if (tools is not null && format is not null)
            throw ApiError.Invalid($"{format.Param ?? "response_format"} together with tools is not supported; use one of them.", format.Param ?? "response_format");

        if (r.Messages is null) throw ApiError.Invalid("messages is required.", "messages");
        if (r.Messages.Count == 0) throw ApiError.Invalid("messages must contain at least one message.", "messages");
        var messages = r.Messages.Select((m, i) => Message(m, i)).ToList();

        if (r.MaxTokens is not null && r.MaxCompletionTokens is not null && r.MaxTokens != r.MaxCompletionTokens)
            throw ApiError.Invalid("max_tokens and max_completion_tokens differ; send one of them.", "max_completion_tokens");
        int maxTokens = MaxTokens(r.MaxCompletionTokens ?? r.MaxTokens, r.MaxCompletionTokens is null ? "max_tokens" : "max_completion_tokens", limits.DefaultMaxTokens, limits);
        bool logprobs = r.Logprobs ?? false;
        int top = r.TopLogprobs ?? 0;
        Range(top, 0, 20, "top_logprobs");
        if (top > 0 && !logprobs) throw ApiError.Invalid("top_logprobs requires logprobs to be true.", "top_logprobs");

        bool continueFinal = r.ContinueFinalMessage ?? false;
        if (continueFinal && r.AddGenerationPrompt == true)
            throw ApiError.Invalid("continue_final_message and add_generation_prompt cannot both be true: an answer either continues the last message or starts a new turn.", "add_generation_prompt");
        if (!continueFinal && r.AddGenerationPrompt == false)
            throw ApiError.Invalid("add_generation_prompt false is only supported with continue_final_message: otherwise the answer always starts a new model turn.", "add_generation_prompt");

        var generation = new TextGenerationRequest
        {
            Messages = messages, ContinueFinalMessage = continueFinal, MaxTokens = maxTokens, N = Choices(r.N, limits),
            Sampling = Sampling(r, limits),
            Stop = Stops(r.Stop), Logprobs = logprobs, TopLogprobs = top,
            SessionId = Session(r.SessionId, headerSession), Owner = owner, Format = format, Tools = tools,
        };
        generation = WithEnds(generation, r, limits);
        var (stream, usage, continuous) = StreamFlags(r.Stream, r.StreamOptions);
        return new ValidatedRequest([generation], stream, usage, continuous, r.ReturnTokenIds ?? false, ServiceTiers.Name(r.ServiceTier));
    }

    public static ValidatedRequest Completion(CompletionRequest r, ValidationLimits limits, string? headerSession, string? owner)
    {
        CheckModel(r.Model, limits);
        NoBeamSearch(r);
        if (r.Suffix is not null) throw ApiError.Invalid("suffix (insertion) is not supported by this model.", "suffix");
        int n = Choices(r.N, limits);
        int bestOf = r.BestOf ?? n;
        Range(bestOf, n, limits.MaxChoices, "best_of");   // OpenAI: best_of must be at least n
        if (bestOf > n && r.Stream == true) throw ApiError.Invalid("best_of greater than n cannot be streamed: the best candidates are known only when all have ended.", "best_of");
        var prompts = Prompts(r.Prompt, limits);
        int top = r.Logprobs ?? 0;
        Range(top, 0, 20, "logprobs");
        var sampling = Sampling(r, limits);
        // OpenAI's default for completions is 16. With echo and logprobs 0 scores the prompt only
        // (how evaluation harnesses read a text's log-likelihood).
        bool scoresPrompt = (r.Echo ?? false) && r.Logprobs is not null;
        int maxTokens = MaxTokens(r.MaxTokens, "max_tokens", 16, limits, least: scoresPrompt ? 0 : 1);
        var stops = Stops(r.Stop);
        var session = Session(r.SessionId, headerSession);
        var format = GuidedOutputs.Format(r, Format(r.ResponseFormat));
        if (session is not null && prompts.Count > 1) throw ApiError.Invalid("session_id needs a single prompt.", "session_id");
        var generations = prompts.Select(p => WithEnds(new TextGenerationRequest
        {
            Prompt = p.Text, PromptTokenIds = p.Ids, MaxTokens = maxTokens, N = bestOf, Sampling = sampling, Stop = stops,
            Logprobs = r.Logprobs is not null || bestOf > n, TopLogprobs = top, Echo = r.Echo ?? false, PromptLogprobs = scoresPrompt,
            SessionId = session, Owner = owner, Format = format,
        }, r, limits)).ToList();
        var (stream, usage, continuous) = StreamFlags(r.Stream, r.StreamOptions);
        return new ValidatedRequest(generations, stream, usage, continuous, r.ReturnTokenIds ?? false, ServiceTiers.Name(r.ServiceTier),
            Returned: n, ShowLogprobs: r.Logprobs is not null);
    }

    static readonly System.Text.RegularExpressions.Regex SchemaName = new("^[a-zA-Z0-9_-]{1,64}$");

    /// <summary>response_format → what the output must be (null: free text). The schema itself
    /// is compiled by the inference layer, which names any keyword it cannot enforce.</summary>
    static Inference.Constraints.OutputFormat? Format(ResponseFormatDto? f)
    {
        if (f is null) return null;
        switch (f.Type)
        {
            case null: throw ApiError.Invalid("response_format.type is required (text, json_object or json_schema).", "response_format.type");
            case "text": return null;
            case "json_object": return new(Inference.Constraints.OutputFormatKind.JsonObject);
            case "json_schema":
                var js = f.JsonSchema ?? throw ApiError.Invalid("response_format.json_schema is required when type is json_schema.", "response_format.json_schema");
                if (js.Name is null || !SchemaName.IsMatch(js.Name))
                    throw ApiError.Invalid("response_format.json_schema.name must match ^[a-zA-Z0-9_-]{1,64}$.", "response_format.json_schema.name");
                if (js.Schema is not { ValueKind: JsonValueKind.Object or JsonValueKind.True } schema)
                    throw ApiError.Invalid("response_format.json_schema.schema must be a JSON Schema object.", "response_format.json_schema.schema");
                return new(Inference.Constraints.OutputFormatKind.JsonSchema, schema, js.Strict ?? false);
            default:
                throw ApiError.Invalid($"response_format type '{f.Type}' is not supported; use text, json_object or json_schema.", "response_format.type");
        }
    }

    /// <summary>vLLM's use_beam_search changes what an answer is: refused by name rather than ignored like an unknown field.</summary>
    static void NoBeamSearch(GenerationRequestBase r)
    {
        if (r.UseBeamSearch == true)
            throw ApiError.Invalid("use_beam_search is not supported: this server samples (n, and best_of on completions); it does not search beams.", "use_beam_search");
    }

    static void CheckModel(string? model, ValidationLimits limits)
    {
        if (model is not null && model != limits.ModelId) throw ApiError.ModelNotFound(model);
    }

    static ChatMessage Message(ChatMessageDto m, int i) => Plain(m, i) with
    {
        ToolCalls = ToolValidation.Calls(m, i), ToolCallId = m.ToolCallId, Name = m.Name,
    };

    static ChatMessage Plain(ChatMessageDto m, int i)
    {
        if (string.IsNullOrEmpty(m.Role)) throw ApiError.Invalid($"messages[{i}].role is required.", $"messages[{i}].role");
        var content = m.Content;
        bool assistant = m.Role == "assistant";
        if (content is null || content.Value.ValueKind == JsonValueKind.Null)
            return new ChatMessage(m.Role, assistant && m.Refusal is { } declined ? declined : "");   // a refusal is what the model said
        if (content.Value.ValueKind == JsonValueKind.String) return new ChatMessage(m.Role, content.Value.GetString());
        if (content.Value.ValueKind != JsonValueKind.Array)
            throw ApiError.Invalid($"messages[{i}].content must be a string or an array of content parts.", $"messages[{i}].content");
        var parts = new List<ChatContentPart>();
        int p = 0;
        foreach (var part in content.Value.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw ApiError.Invalid($"messages[{i}].content[{p}] must be an object with a 'type'.", $"messages[{i}].content[{p}].type");
            // An assistant's refusal part (OpenAI's clients send earlier answers back in this form) is its text.
            bool refusal = assistant && type.GetString() == "refusal";
            string? text = part.TryGetProperty(refusal ? "refusal" : "text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            parts.Add(new ChatContentPart(refusal ? "text" : type.GetString()!, text));
            p++;
        }
        return new ChatMessage(m.Role, null, parts);
    }

    /// <summary>One prompt of a completions request: text (BOS is added), or token ids read as given.</summary>
    readonly record struct PromptInput(string? Text, int[]? Ids);

    /// <summary>OpenAI's four forms of prompt: a string, strings, token ids (one prompt), or
    /// arrays of token ids (one prompt each). Ids are the whole prompt: no BOS is added to them,
    /// as OpenAI and vLLM read them (POST /tokenize gives the ids a text prompt would have).</summary>
    static List<PromptInput> Prompts(JsonElement? prompt, ValidationLimits limits)
    {
        if (prompt is null || prompt.Value.ValueKind == JsonValueKind.Null) throw ApiError.Invalid("prompt is required.", "prompt");
        var v = prompt.Value;
        if (v.ValueKind == JsonValueKind.String) return [new(v.GetString()!, null)];
        const string Forms = "prompt must be a string, an array of strings, an array of token ids, or an array of arrays of token ids.";
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0) throw ApiError.Invalid(Forms, "prompt");
        var kind = v[0].ValueKind;
        if (v.EnumerateArray().Any(e => e.ValueKind != kind)) throw ApiError.Invalid(Forms, "prompt");
        if (kind == JsonValueKind.Number) return [new(null, TokenIds(v, "prompt", limits))];
        if (kind is not (JsonValueKind.String or JsonValueKind.Array)) throw ApiError.Invalid(Forms, "prompt");
        if (v.GetArrayLength() > limits.MaxPrompts)
            throw ApiError.Invalid($"prompt may hold at most {limits.MaxPrompts} prompts, got {v.GetArrayLength()}.", "prompt");
        return kind == JsonValueKind.String
            ? v.EnumerateArray().Select(e => new PromptInput(e.GetString()!, null)).ToList()
            : v.EnumerateArray().Select((e, i) => new PromptInput(null, TokenIds(e, $"prompt[{i}]", limits))).ToList();
    }

    static int[] TokenIds(JsonElement ids, string field, ValidationLimits limits)
    {
        if (ids.GetArrayLength() == 0) throw ApiError.Invalid($"{field} must hold at least one token id.", field);
        var result = new int[ids.GetArrayLength()];
        int i = 0;
        foreach (var e in ids.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0 || id >= limits.VocabSize)
                throw ApiError.Invalid($"{field}[{i}] is {e.GetRawText()}: not a token id of this model (0..{limits.VocabSize - 1}).", $"{field}[{i}]");
            result[i++] = id;
        }
        return result;
    }

    /// <summary>vLLM's extensions on where a choice ends: stop_token_ids, ignore_eos, min_tokens, include_stop_str_in_output.</summary>
    static TextGenerationRequest WithEnds(TextGenerationRequest g, GenerationRequestBase r, ValidationLimits limits)
    {
        var ids = r.StopTokenIds ?? [];
        if (ids.Count > MaxStopTokenIds) throw ApiError.Invalid($"stop_token_ids may hold at most {MaxStopTokenIds} ids, got {ids.Count}.", "stop_token_ids");
        for (int i = 0; i < ids.Count; i++)
            if (ids[i] < 0 || ids[i] >= limits.VocabSize)
                throw ApiError.Invalid($"stop_token_ids[{i}] is {ids[i]}: not a token id of this model (0..{limits.VocabSize - 1}).", $"stop_token_ids[{i}]");
        int min = r.MinTokens ?? 0;
        if (min < 0 || min > g.MaxTokens)
            throw ApiError.Invalid($"min_tokens must be between 0 and max_tokens ({g.MaxTokens}), got {min}.", "min_tokens");
        return g with
        {
            StopTokenIds = ids, IgnoreEos = r.IgnoreEos ?? false, MinTokens = min, IncludeStopString = r.IncludeStopStrInOutput ?? false,
            Priority = r.Priority ?? ServiceTiers.Priority(r.ServiceTier), AllowedTokenIds = r.AllowedTokenIds, BadWords = r.BadWords,
        };
    }

    const int MaxStopTokenIds = 256;

    static int MaxTokens(int? value, string field, int fallback, ValidationLimits limits, int least = 1)
    {
        int v = value ?? Math.Min(fallback, limits.MaxNewTokens);
        Range(v, least, limits.MaxNewTokens, field);
        return v;
    }

    static int Choices(int? n, ValidationLimits limits)
    {
        int v = n ?? 1;
        Range(v, 1, limits.MaxChoices, "n");
        return v;
    }

    static SamplingParams Sampling(GenerationRequestBase r, ValidationLimits limits)
    {
        var (temperature, topP, topK, minP, presence, frequency, repetition, logitBias, seed) =
            (r.Temperature, r.TopP, r.TopK, r.MinP, r.PresencePenalty, r.FrequencyPenalty, r.RepetitionPenalty, r.LogitBias, r.Seed);
        float t = temperature ?? 1f;
        Range(t, 0, 2, "temperature");
        float p = topP ?? 1f;
        if (!(p > 0 && p <= 1)) throw ApiError.Invalid($"top_p must be greater than 0 and at most 1, got {p}.", "top_p");
        int k = topK ?? 0;
        if (k < -1) throw ApiError.Invalid($"top_k must be -1 or 0 (off) or a positive number, got {k}.", "top_k");
        float mp = minP ?? 0;
        Range(mp, 0, 1, "min_p");
        Range(presence ?? 0, -2, 2, "presence_penalty");
        Range(frequency ?? 0, -2, 2, "frequency_penalty");
        float rep = repetition ?? 1;
        if (!(rep > 0 && rep <= 2)) throw ApiError.Invalid($"repetition_penalty must be greater than 0 and at most 2, got {rep}.", "repetition_penalty");
        Dictionary<int, float>? bias = null;
        if (logitBias is { Count: > 0 })
        {
            if (logitBias.Count > 300) throw ApiError.Invalid("logit_bias may hold at most 300 entries.", "logit_bias");
            bias = new();
            foreach (var (key, value) in logitBias)
            {
                if (!int.TryParse(key, out var id) || id < 0 || id >= limits.VocabSize)
                    throw ApiError.Invalid($"logit_bias key '{key}' is not a token id (0..{limits.VocabSize - 1}).", "logit_bias");
                Range(value, -100, 100, "logit_bias");
                bias[id] = value;
            }
        }
        return new SamplingParams
        {
            Temperature = t, TopP = p, TopK = Math.Max(0, k), MinP = mp, PresencePenalty = presence ?? 0, FrequencyPenalty = frequency ?? 0,
            RepetitionPenalty = rep, LogitBias = bias, Seed = seed,
        };
    }

    static List<string> Stops(JsonElement? stop)
    {
        if (stop is null || stop.Value.ValueKind == JsonValueKind.Null) return [];
        var v = stop.Value;
        List<string> stops;
        if (v.ValueKind == JsonValueKind.String) stops = [v.GetString()!];
        else if (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            stops = v.EnumerateArray().Select(e => e.GetString()!).ToList();
        else throw ApiError.Invalid("stop must be a string or an array of strings.", "stop");
        if (stops.Count > StopSequenceMatcher.MaxStops) throw ApiError.Invalid($"stop may hold at most {StopSequenceMatcher.MaxStops} sequences, got {stops.Count}.", "stop");
        if (stops.Any(s => s.Length == 0)) throw ApiError.Invalid("stop sequences must not be empty.", "stop");
        return stops;
    }

    static string? Session(string? body, string? header)
    {
        var s = body ?? header;
        if (s is null) return null;
        if (body is not null && header is not null && body != header) throw ApiError.Invalid("session_id and the X-Session-Id header differ.", "session_id");
        if (s.Length is 0 or > 256) throw ApiError.Invalid("session_id must be 1 to 256 characters.", "session_id");
        return s;
    }

    static (bool Stream, bool IncludeUsage, bool ContinuousUsage) StreamFlags(bool? stream, StreamOptionsDto? options)
    {
        bool s = stream ?? false;
        if (options is not null && !s) throw ApiError.Invalid("stream_options is only allowed when stream is true.", "stream_options");
        bool usage = options?.IncludeUsage ?? false;
        // As vLLM: usage on every chunk only together with include_usage.
        return (s, usage, usage && (options?.ContinuousUsageStats ?? false));
    }

    static void Range(double value, double min, double max, string field)
    {
        if (double.IsNaN(value) || value < min || value > max)
            throw ApiError.Invalid($"{field} must be between {min} and {max}, got {value}.", field);
    }
}
