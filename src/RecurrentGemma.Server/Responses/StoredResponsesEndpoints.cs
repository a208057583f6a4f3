using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Responses;

/// <summary>GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items — the caller's own
/// stored responses only: another API key's id is a 404, as an unknown one is.</summary>
public static class StoredResponsesEndpoints
{
    static ApiError NotFound(string id) => new(404, $"Response with id '{id}' not found.", "invalid_request_error", "response_id", "not_found");

    public static IResult Get(string id, ApiContext api, ResponseStore store)
    {
        var stored = ResponsesEndpoint.Read(store, api.Owner, id) ?? throw NotFound(id);
        return TypedResults.Json(stored.Response, ResponsesJson.Default.ResponseObject);
    }

    /// <summary>Removes the transcript and the response's parked state from every tier.</summary>
    public static async Task<IResult> Delete(string id, ApiContext api, ResponseStore store, ModelHost host)
    {
        bool deleted;
        try { deleted = store.Delete(api.Owner, id); }
        catch (ResponseStoreUnavailableException) { throw ApiError.Unavailable("The response store is unavailable; retry shortly."); }
        // The state goes even when the transcript was already gone (e.g. expired first).
        if (host.Status == ModelStatus.Ready && host.Inference is { } inference) await inference.Engine.DropSessionAsync(id, api.Owner);
        if (!deleted) throw NotFound(id);
        return TypedResults.Json(new ResponseDeletedDto(id, "response.deleted", true), ResponsesJson.Default.ResponseDeletedDto);
    }

    /// <summary>The items the response was generated from — the conversation's earlier items and its
    /// own input — newest first by default, paged with limit (1–100, default 20), after and before.</summary>
    public static IResult InputItems(string id, ApiContext api, ResponseStore store, string? limit, string? order, string? after, string? before)
    {
        ItemPages.Check(limit, order);
        var stored = ResponsesEndpoint.Read(store, api.Owner, id) ?? throw NotFound(id);
        return TypedResults.Json(ItemPages.Page(stored.Context, limit, order, after, before, "response"), ResponsesJson.Default.ResponseItemListDto);
    }
}
