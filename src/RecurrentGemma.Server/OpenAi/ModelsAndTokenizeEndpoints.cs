using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Text;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>GET /v1/models, GET /v1/models/{id}, POST /tokenize, POST /detokenize.</summary>
public static class ModelsAndTokenizeEndpoints
{
    public static IResult List(ModelHost host) =>
        TypedResults.Json(new ModelListDto("list", [Describe(host)]), OpenAiJson.Default.ModelListDto);

    public static IResult Get(string id, ModelHost host) => id == host.ModelId
        ? TypedResults.Json(Describe(host), OpenAiJson.Default.ModelDto)
        : ApiErrorWriter.Result(ApiError.ModelNotFound(id));

    static ModelDto Describe(ModelHost host) =>
        new(host.ModelId, "model", host.Created.ToUnixTimeSeconds(), host.IsDemo ? "recurrentgemma-server (demo)" : "google", host.ModelId, host.MaxPromptTokens);

    public static async Task Tokenize(HttpContext context, ApiContext api)
    {
        var body = await RequestReader.ReadAsync(context, OpenAiJson.Default.TokenizeRequest);
        var service = api.RequireReady();
        if (body.Model is not null && body.Model != service.ModelId) throw ApiError.ModelNotFound(body.Model);
        List<int> tokens;
        if (body.Messages is not null)
        {
            var chat = RequestValidation.Chat(new ChatCompletionRequest
            {
                Messages = body.Messages, ContinueFinalMessage = body.ContinueFinalMessage, AddGenerationPrompt = body.AddGenerationPrompt,
            }, api.Limits, null, api.Owner);
            tokens = service.PromptTokens(chat.Generations[0]);
        }
        else if (body.Prompt is not null)
            tokens = body.AddSpecialTokens ?? true ? service.Tokenizer.EncodeWithBos(body.Prompt) : service.Tokenizer.Encode(body.Prompt);
        else throw ApiError.Invalid("prompt or messages is required.", "prompt");
        await context.Response.WriteAsJsonAsync(new TokenizeResponse(tokens, tokens.Count, api.Engine.MaxPromptTokens),
            OpenAiJson.Default.TokenizeResponse, contentType: "application/json", api.RequestToken);
    }

    public static async Task Detokenize(HttpContext context, ApiContext api)
    {
        var body = await RequestReader.ReadAsync(context, OpenAiJson.Default.DetokenizeRequest);
        var service = api.RequireReady();
        if (body.Model is not null && body.Model != service.ModelId) throw ApiError.ModelNotFound(body.Model);
        if (body.Tokens is null) throw ApiError.Invalid("tokens is required.", "tokens");
        foreach (var t in body.Tokens)
            if (t < 0 || t >= service.Tokenizer.VocabSize) throw ApiError.Invalid($"token id {t} is outside the vocabulary (0..{service.Tokenizer.VocabSize - 1}).", "tokens");
        await context.Response.WriteAsJsonAsync(new DetokenizeResponse(service.Tokenizer.Decode(body.Tokens)),
            OpenAiJson.Default.DetokenizeResponse, contentType: "application/json", api.RequestToken);
    }
}
