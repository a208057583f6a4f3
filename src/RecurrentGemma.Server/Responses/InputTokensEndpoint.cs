using RecurrentGemma.Inference;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Responses;

/// <summary>POST /v1/responses/input_tokens → {"object": "response.input_tokens", "input_tokens": n}.</summary>
public sealed record InputTokensDto(string Object, int InputTokens);

/// <summary>
/// POST /v1/responses/input_tokens: how many tokens the same request to POST /v1/responses would
/// read — its instructions, the conversation or the previous response it continues, its input and
/// its tools, rendered by the same code — without running it, so it equals that response's
/// usage.input_tokens. Nothing is stored and no conversation is held.
/// </summary>
public static class InputTokensEndpoint
{
    public static async Task<IResult> Count(HttpContext context, ApiContext api, ResponseStore store)
    {
        var body = await RequestReader.ReadAsync(context, ResponsesJson.Default.CreateResponseRequest);
        var service = api.RequireReady();
        var v = ResponseRequestValidation.Validate(body, api.Limits, inputRequired: false);
        var transcript = ResponsesEndpoint.Transcript(store, api.Owner, v);
        if (transcript.Messages.Count == 0) throw ApiError.Invalid("input is required when there is no conversation or previous response to count.", "input");
        int count;
        try
        {
            count = service.PromptTokens(new TextGenerationRequest { Messages = transcript.Messages, Tools = v.Tools, Owner = api.Owner, MaxTokens = 1 }).Count;
        }
        catch (InvalidRequestException e) { throw ResponsesEndpoint.Renamed(e); }
        return TypedResults.Json(new InputTokensDto("response.input_tokens", count), ResponsesJson.Default.InputTokensDto);
    }
}
