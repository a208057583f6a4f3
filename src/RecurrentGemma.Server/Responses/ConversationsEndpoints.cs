using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using RecurrentGemma.Server.Hosting;
using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// /v1/conversations: a conversation is a stored list of items that responses run with
/// <c>conversation</c> read and extend (see <see cref="ResponsesEndpoint"/>). The Griffin state
/// after its last answer parks under the conversation's id, so the next response prefills only
/// the items added since; after an edit that changes what came before (an item deleted), the
/// rendered transcript no longer extends the parked state and the next response prefills it
/// whole — the answer is the same either way. Every change is a read, modify and write of the
/// record under the conversation's lock (one writer at a time, across replicas with Redis): a
/// change that cannot get it within a moment is a 409, as OpenAI's conversation_locked is.
/// </summary>
public static class ConversationsEndpoints
{
    /// <summary>Items one create call may add (OpenAI's limit).</summary>
    const int MaxItemsPerCall = 20;
    static readonly TimeSpan EditHold = TimeSpan.FromSeconds(30);
    static readonly TimeSpan LockWait = TimeSpan.FromSeconds(2);

    public static async Task<IResult> Create(HttpContext context, ApiContext api, ResponseStore store)
    {
        var body = HasBody(context.Request) ? await RequestReader.ReadAsync(context, ConversationsJson.Default.CreateConversationRequest) : new();
        var metadata = ResponseRequestValidation.Metadata(body.Metadata);
        var items = body.Items is { ValueKind: not JsonValueKind.Null } list ? ResponseInput.ParseList(list, "items", MaxItemsPerCall, allowEmpty: true) : [];
        var conversation = new ConversationDto { Id = ResponseInput.NewId("conv_"), CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Metadata = metadata };
        Write(store, api.Owner, new StoredConversation { Conversation = conversation, Items = items });
        return TypedResults.Json(conversation, ConversationsJson.Default.ConversationDto);
    }

    public static IResult Get([FromRoute(Name = "conversation_id")] string id, ApiContext api, ResponseStore store) =>
        TypedResults.Json(Read(store, api.Owner, id).Conversation, ConversationsJson.Default.ConversationDto);

    /// <summary>Replaces the metadata (OpenAI's update: metadata is the only thing to change).</summary>
    public static async Task<IResult> Update([FromRoute(Name = "conversation_id")] string id, HttpContext context, ApiContext api, ResponseStore store)
    {
        var body = await RequestReader.ReadAsync(context, ConversationsJson.Default.UpdateConversationRequest);
        if (body.Metadata is null) throw ApiError.Invalid("metadata is required.", "metadata");
        var metadata = ResponseRequestValidation.Metadata(body.Metadata);
        var updated = await EditAsync(store, api.Owner, id, api.RequestToken, c => c with { Conversation = c.Conversation with { Metadata = metadata } });
        return TypedResults.Json(updated.Conversation, ConversationsJson.Default.ConversationDto);
    }

    /// <summary>Deletes the conversation's record and its parked state in every tier. The responses
    /// that ran in it stay (they are records of their own).</summary>
    public static async Task<IResult> Delete([FromRoute(Name = "conversation_id")] string id, ApiContext api, ResponseStore store, ModelHost host)
    {
        using (await LockAsync(store, api.Owner, id, EditHold, api.RequestToken))
        {
            bool deleted = store.Delete(api.Owner, id);
            if (host.Status == ModelStatus.Ready && host.Inference is { } inference) await inference.Engine.DropSessionAsync(id, api.Owner);
            if (!deleted) throw NotFound(id);
        }
        return TypedResults.Json(new ConversationDeletedDto(id, "conversation.deleted", true), ConversationsJson.Default.ConversationDeletedDto);
    }

    /// <summary>The items, newest first by default; limit (1–100, default 20), order, after. The
    /// include values of OpenAI's list are accepted as the Responses API accepts them.</summary>
    public static IResult ListItems([FromRoute(Name = "conversation_id")] string id, ApiContext api, ResponseStore store, string? limit, string? order, string? after)
    {
        ItemPages.Check(limit, order);
        var stored = Read(store, api.Owner, id);
        var page = ItemPages.Page(stored.Items, limit, order, after, null, "conversation");
        return TypedResults.Json(page, ConversationsJson.Default.ResponseItemListDto);
    }

    /// <summary>Appends 1–20 items; returns them as a list (with their ids).</summary>
    public static async Task<IResult> AddItems([FromRoute(Name = "conversation_id")] string id, HttpContext context, ApiContext api, ResponseStore store)
    {
        var body = await RequestReader.ReadAsync(context, ConversationsJson.Default.CreateConversationItemsRequest);
        if (body.Items is not { ValueKind: not JsonValueKind.Null } list) throw ApiError.Invalid("items is required.", "items");
        var items = ResponseInput.ParseList(list, "items", MaxItemsPerCall);
        await EditAsync(store, api.Owner, id, api.RequestToken, c =>
        {
            CheckNewIds(c.Items, items, "items");
            return c with { Items = [.. c.Items, .. items] };
        });
        return TypedResults.Json(new ResponseItemListDto("list", items, items[0].Id, items[^1].Id, false), ConversationsJson.Default.ResponseItemListDto);
    }

    public static IResult GetItem([FromRoute(Name = "conversation_id")] string id, [FromRoute(Name = "item_id")] string itemId, ApiContext api, ResponseStore store)
    {
        var item = Read(store, api.Owner, id).Items.FirstOrDefault(i => i.Id == itemId) ?? throw ItemNotFound(itemId);
        return TypedResults.Json(item, ConversationsJson.Default.ResponseItemDto);
    }

    /// <summary>Removes one item; returns the conversation. Later responses render the transcript
    /// without it (a full prefill, since the parked state read it).</summary>
    public static async Task<IResult> DeleteItem([FromRoute(Name = "conversation_id")] string id, [FromRoute(Name = "item_id")] string itemId, ApiContext api, ResponseStore store)
    {
        var updated = await EditAsync(store, api.Owner, id, api.RequestToken, c =>
        {
            int at = c.Items.FindIndex(i => i.Id == itemId);
            if (at < 0) throw ItemNotFound(itemId);
            var sampled = new Dictionary<string, int[]>(c.SampledIds);
            sampled.Remove(itemId);
            return c with { Items = [.. c.Items[..at], .. c.Items[(at + 1)..]], SampledIds = sampled };
        });
        return TypedResults.Json(updated.Conversation, ConversationsJson.Default.ConversationDto);
    }

    /// <summary>Items added to a conversation must not reuse an id it already has (an item is found by its id).</summary>
    public static void CheckNewIds(List<ResponseItemDto> existing, List<ResponseItemDto> added, string field)
    {
        var ids = existing.Select(i => i.Id).ToHashSet();
        for (int i = 0; i < added.Count; i++)
            if (ids.Contains(added[i].Id))
                throw ApiError.Invalid($"{field}[{i}].id '{added[i].Id}' is already an item of this conversation.", $"{field}[{i}].id");
    }

    /// <summary>Reads, changes and writes the conversation under its lock.</summary>
    static async Task<StoredConversation> EditAsync(ResponseStore store, string? owner, string id, CancellationToken ct, Func<StoredConversation, StoredConversation> change)
    {
        using var _ = await LockAsync(store, owner, id, EditHold, ct);
        var updated = change(Read(store, owner, id));
        Write(store, owner, updated);
        return updated;
    }

    /// <summary>The conversation's lock, waited for a moment; a 409 when another change holds it
    /// (a response still running in the conversation holds it until its answer is added).</summary>
    public static async Task<IDisposable> LockAsync(ResponseStore store, string? owner, string id, TimeSpan hold, CancellationToken ct, TimeSpan? renewEvery = null)
    {
        var until = DateTimeOffset.UtcNow + LockWait;
        while (true)
        {
            if (store.TryLock(owner, id, hold, renewEvery) is { } held) return held;
            if (DateTimeOffset.UtcNow > until)
                throw new ApiError(409, $"Another request is currently changing conversation '{id}' (a response running in it holds it until its answer is added). Retry when it is done.",
                    "invalid_request_error", "conversation", "conversation_locked");
            await Task.Delay(25, ct);
        }
    }

    /// <summary>The caller's conversation, or a 404 (another API key's id too).</summary>
    public static StoredConversation Read(ResponseStore store, string? owner, string id, string param = "conversation_id") =>
        store.GetConversation(owner, id) ?? throw NotFound(id, param);

    static void Write(ResponseStore store, string? owner, StoredConversation conversation) => store.Put(owner, conversation);

    static ApiError NotFound(string id, string param = "conversation_id") =>
        new(404, $"Conversation with id '{id}' not found.", "invalid_request_error", param, "not_found");
    static ApiError ItemNotFound(string id) => new(404, $"Item with id '{id}' not found.", "invalid_request_error", "item_id", "not_found");

    /// <summary>POST /v1/conversations may come without a body (curl -X POST): an empty conversation.</summary>
    static bool HasBody(HttpRequest request) =>
        request.ContentLength is > 0 || (request.ContentLength is null && (request.Headers.TransferEncoding.Count > 0 || request.ContentType is not null));
}
