using System.Globalization;
using Microsoft.AspNetCore.Mvc;
using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Responses;

/// <summary>GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel — the caller's own
/// stored responses only: another API key's id is a 404, as an unknown one is.</summary>
public static class StoredResponsesEndpoints
{
    static ApiError NotFound(string id) => new(404, $"Response with id '{id}' not found.", "invalid_request_error", "response_id", "not_found");

    /// <summary>The stored response; with stream=true (a background response this server runs or
    /// ran in the last minutes — or any replica did, with a shared store) its events from
    /// starting_after on, as server-sent events.</summary>
    public static async Task<IResult> Get(string id, HttpContext context, ApiContext api, ResponseStore store, BackgroundResponses background,
        string? stream, [FromQuery(Name = "starting_after")] string? startingAfter)
    {
        bool streamed = stream switch
        {
            null or "false" => false,
            "true" => true,
            _ => throw ApiError.Invalid($"stream must be true or false, got '{Clip(stream)}'.", "stream"),
        };
        int after = -1;
        if (startingAfter is not null && !(int.TryParse(startingAfter, NumberStyles.None, CultureInfo.InvariantCulture, out after)))
            throw ApiError.Invalid($"starting_after must be a sequence number (0 or more), got '{Clip(startingAfter)}'.", "starting_after");
        if (startingAfter is not null && !streamed) throw ApiError.Invalid("starting_after needs stream=true.", "starting_after");
        var stored = background.Settle(store, api.Owner, ResponsesEndpoint.Read(store, api.Owner, id) ?? throw NotFound(id));
        if (!streamed) return TypedResults.Json(stored.Response, ResponsesJson.Default.ResponseObject);
        if (!stored.Response.Background) throw ApiError.Invalid("stream=true reads the events of a background response; this one was not.", "stream");
        if (background.Events(api.Owner, id) is { } log)
        {
            await StreamEvents(context, api, log.ReadAsync(after, api.RequestToken));
            return Results.Empty;
        }
        // Run by another replica (or by this one before a restart): the shared store's copy, where there is one.
        bool running = stored.Response.Status is "queued" or "in_progress";
        if (!store.SharesLists || (!running && !await SharedEventLog.ExistsAsync(store, api.Owner, id)))
            throw ApiError.Invalid(store.SharesLists
                ? "This response's events are no longer kept: they are kept while it runs and for 10 minutes after."
                : "This response's events are not held here: without a shared store (Sessions:Store=redis) a background response's events are kept by the server that ran it, while it runs and for 10 minutes after (the last 64 that ended).", "stream");
        int polls = 0;
        async Task<string?> Status()
        {
            // Its record every 200 ms; every 5 s settled too, so a record left running by a dead server ends the stream.
            if (++polls % 25 == 0) return ResponsesEndpoint.Read(store, api.Owner, id) is { } now ? background.Settle(store, api.Owner, now).Response.Status : null;
            return await store.StatusAsync(api.Owner, id);
        }
        await StreamEvents(context, api, SharedEventLog.ReadAsync(store, api.Owner, id, after, Status, api.RequestToken));
        return Results.Empty;
    }

    /// <summary>A background response's events as server-sent events, until it ends or the client
    /// leaves (the response goes on without it).</summary>
    internal static async Task StreamEvents(HttpContext context, ApiContext api, IAsyncEnumerable<ResponseStreamEvent> source)
    {
        var ct = api.RequestToken;
        var sse = new ServerSentEvents(context.Response, api.KeepAlive);
        await sse.StartAsync(ct);
        var events = source.GetAsyncEnumerator(ct);
        await using var _ = events;
        try
        {
            while (await sse.NextAsync(events, ct)) await sse.WriteEventAsync(events.Current.Type, events.Current, ResponsesJson.Default.ResponseStreamEvent, ct);
        }
        catch (Exception e) when (ct.IsCancellationRequested && e is OperationCanceledException or IOException) { }   // the client left
    }

    /// <summary>POST /v1/responses/{id}/cancel: stops a queued or running background response; it
    /// keeps what it made so far, with status cancelled. Cancelling one again returns it as it is.</summary>
    public static async Task<IResult> Cancel(string id, ApiContext api, ResponseStore store, BackgroundResponses background)
    {
        var stored = background.Settle(store, api.Owner, ResponsesEndpoint.Read(store, api.Owner, id) ?? throw NotFound(id));
        if (!stored.Response.Background) throw ApiError.Invalid($"Response '{id}' was not created with background: true; only background responses can be cancelled.", null);
        if (stored.Response.Status is "completed" or "incomplete" or "failed")
            throw ApiError.Invalid($"Response '{id}' has already finished (status {stored.Response.Status}); only a queued or in-progress response can be cancelled.", null);
        var after = await background.CancelAsync(store, api.Owner, stored, api.RequestToken);
        return TypedResults.Json(after.Response, ResponsesJson.Default.ResponseObject);
    }

    static string Clip(string s) => s.Length > 20 ? s[..20] + "…" : s;

    /// <summary>Removes the transcript and the response's parked state from every tier.</summary>
    public static async Task<IResult> Delete(string id, ApiContext api, ResponseStore store, ModelHost host, BackgroundResponses background)
    {
        // A background response still running stops first (its end would write the record again).
        if (ResponsesEndpoint.Read(store, api.Owner, id) is { Response: { Background: true, Status: "queued" or "in_progress" } } running)
            await background.CancelAsync(store, api.Owner, running, api.RequestToken);
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
