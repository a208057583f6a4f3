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
    /// own input — newest first by default, paged with limit (1–100, default 20), after and before.
    /// The limit is read as text, so that a value that is no number is a 400 naming it (bound as
    /// an int, the framework's bare 400 said nothing).</summary>
    public static IResult InputItems(string id, ApiContext api, ResponseStore store, string? limit, string? order, string? after, string? before)
    {
        int take = 20;
        if (limit is not null && !int.TryParse(limit, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out take))
            throw ApiError.Invalid($"limit must be an integer between 1 and 100, got '{(limit.Length > 20 ? limit[..20] + "…" : limit)}'.", "limit");
        if (take is < 1 or > 100) throw ApiError.Invalid($"limit must be between 1 and 100, got {take}.", "limit");
        if (order is not (null or "asc" or "desc")) throw ApiError.Invalid($"order must be asc or desc, got '{order}'.", "order");
        var stored = ResponsesEndpoint.Read(store, api.Owner, id) ?? throw NotFound(id);
        var items = order == "asc" ? stored.Context.ToList() : Enumerable.Reverse(stored.Context).ToList();
        if (after is not null)
        {
            int at = items.FindIndex(i => i.Id == after);
            if (at < 0) throw ApiError.Invalid($"after '{after}' is not an item of this response.", "after");
            items = items[(at + 1)..];
        }
        if (before is not null)
        {
            int at = items.FindIndex(i => i.Id == before);
            if (at < 0) throw ApiError.Invalid($"before '{before}' is not an item of this response.", "before");
            items = items[..at];
        }
        var page = items.Take(take).ToList();
        return TypedResults.Json(new ResponseItemListDto("list", page, page.FirstOrDefault()?.Id, page.LastOrDefault()?.Id, items.Count > take),
            ResponsesJson.Default.ResponseItemListDto);
    }
}
