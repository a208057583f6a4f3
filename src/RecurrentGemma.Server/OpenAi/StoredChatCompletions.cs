using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Mvc;
using RecurrentGemma.Server.Responses;

namespace RecurrentGemma.Server.OpenAi;

/// <summary>A chat completion kept with store: true: the object as returned, its metadata, and the
/// request's messages.</summary>
public sealed record StoredChatCompletion
{
    public required ChatCompletionResponse Completion { get; init; }
    public Dictionary<string, string> Metadata { get; init; } = [];
    public List<StoredChatMessageDto> Messages { get; init; } = [];
}

/// <summary>One request message of a stored completion, as GET …/messages lists it.</summary>
public sealed record StoredChatMessageDto(string Id, string Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Content,
    JsonElement? ContentParts = null, string? Name = null, JsonElement? ToolCalls = null, string? ToolCallId = null);

/// <summary>The caller's stored completions in the order they were made, with what listing filters on.</summary>
public sealed record StoredChatIndex
{
    public List<StoredChatIndexEntry> Entries { get; init; } = [];
}

public sealed record StoredChatIndexEntry(string Id, string Model, Dictionary<string, string> Metadata);

public sealed record ChatCompletionListDto(string Object, List<ChatCompletionResponse> Data,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FirstId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? LastId, bool HasMore);

public sealed record ChatMessageListDto(string Object, List<StoredChatMessageDto> Data,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FirstId,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? LastId, bool HasMore);

public sealed record ChatCompletionDeletedDto(string Object, string Id, bool Deleted);

/// <summary>POST /v1/chat/completions/{id} body.</summary>
public sealed class UpdateChatCompletionRequest
{
    public Dictionary<string, string>? Metadata { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(StoredChatCompletion))]
[JsonSerializable(typeof(StoredChatIndex))]
[JsonSerializable(typeof(ChatCompletionListDto))]
[JsonSerializable(typeof(ChatMessageListDto))]
[JsonSerializable(typeof(ChatCompletionDeletedDto))]
[JsonSerializable(typeof(UpdateChatCompletionRequest))]
public sealed partial class StoredChatJson : JsonSerializerContext;

/// <summary>
/// OpenAI's stored chat completions: a completion created with store: true is kept (beside the
/// stored responses, sealed and expiring the same way) and can be read back, listed (filtered by
/// model and metadata), have its messages listed, its metadata replaced, and be deleted. Each
/// caller (API key) has an index of its stored completions in the order they were made, changed
/// under its lock; it lists the newest <see cref="MaxListed"/>.
/// </summary>
public static class StoredChatCompletions
{
    const string IndexId = "chat-completions-index";
    const int MaxListed = 10_000;

    /// <summary>Keeps a finished completion. The answer is already made: a store that cannot be
    /// reached loses the record (logged), not the answer.</summary>
    public static void Save(ResponseStore store, string? owner, ChatCompletionResponse completion, Dictionary<string, string> metadata,
        List<ChatMessageDto> messages, ILogger log)
    {
        try
        {
            var kept = new StoredChatCompletion
            {
                Completion = completion with { PromptTokenIds = null }, Metadata = metadata,
                Messages = messages.Select((m, i) => Message(completion.Id, i, m)).ToList(),
            };
            store.Put(owner, completion.Id, kept, StoredChatJson.Default.StoredChatCompletion);
            EditIndex(store, owner, entries => entries.Add(new StoredChatIndexEntry(completion.Id, completion.Model, metadata)));
        }
        catch (ResponseStoreUnavailableException)
        {
            log.LogWarning("Chat completion {CompletionId} was not stored: the store is unavailable", completion.Id);
        }
    }

    static StoredChatMessageDto Message(string completionId, int i, ChatMessageDto m)
    {
        string? text = null;
        JsonElement? parts = null;
        if (m.Content is { ValueKind: JsonValueKind.String } s) text = s.GetString();
        else if (m.Content is { ValueKind: JsonValueKind.Array } array)
        {
            parts = array.Clone();
            text = string.Join("\n", array.EnumerateArray()
                .Where(p => p.ValueKind == JsonValueKind.Object && p.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String)
                .Select(p => p.GetProperty("text").GetString()));
        }
        return new StoredChatMessageDto($"{completionId}-{i}", m.Role ?? "user", text, parts, m.Name,
            m.ToolCalls is { ValueKind: JsonValueKind.Array } calls ? calls.Clone() : null, m.ToolCallId);
    }

    static void EditIndex(ResponseStore store, string? owner, Action<List<StoredChatIndexEntry>> change)
    {
        using var held = store.LockBriefly(owner, IndexId, TimeSpan.FromSeconds(30));
        var entries = store.Get(owner, IndexId, StoredChatJson.Default.StoredChatIndex)?.Entries ?? [];
        change(entries);
        if (entries.Count > MaxListed) entries.RemoveRange(0, entries.Count - MaxListed);
        store.Put(owner, IndexId, new StoredChatIndex { Entries = entries }, StoredChatJson.Default.StoredChatIndex);
    }

    static StoredChatCompletion Read(ResponseStore store, string? owner, string id) =>
        (id.StartsWith("chatcmpl-", StringComparison.Ordinal) ? store.Get(owner, id, StoredChatJson.Default.StoredChatCompletion) : null)
        ?? throw new ApiError(404, $"Chat completion with id '{id}' not found.", "invalid_request_error", "completion_id", "not_found");

    static ChatCompletionResponse Shown(StoredChatCompletion s) => s.Completion with { Metadata = s.Metadata };

    public static IResult Get([FromRoute(Name = "completion_id")] string id, ApiContext api, ResponseStore store) =>
        TypedResults.Json(Shown(Read(store, api.Owner, id)), OpenAiJson.Default.ChatCompletionResponse);

    /// <summary>The caller's stored completions, oldest first by default; limit (1–100, default
    /// 20), order, after, model, and metadata[key]=value (all must match).</summary>
    public static IResult List(HttpContext context, ApiContext api, ResponseStore store, string? limit, string? order, string? after, string? model)
    {
        ItemPages.Check(limit, order);
        var wanted = context.Request.Query
            .Where(q => q.Key.StartsWith("metadata[", StringComparison.Ordinal) && q.Key.EndsWith(']'))
            .ToDictionary(q => q.Key["metadata[".Length..^1], q => q.Value.ToString());
        var entries = (store.Get(api.Owner, IndexId, StoredChatJson.Default.StoredChatIndex)?.Entries ?? [])
            .Where(e => (model is null || e.Model == model) && wanted.All(w => e.Metadata.TryGetValue(w.Key, out var v) && v == w.Value)).ToList();
        var (page, more) = ItemPages.PageOf(entries, e => e.Id, limit, order ?? "asc", after, null, "list");
        // A listed completion may have expired since (or been evicted from process memory): left out.
        var data = page.Select(e => store.Get(api.Owner, e.Id, StoredChatJson.Default.StoredChatCompletion)).OfType<StoredChatCompletion>().Select(Shown).ToList();
        return TypedResults.Json(new ChatCompletionListDto("list", data, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id, more), StoredChatJson.Default.ChatCompletionListDto);
    }

    /// <summary>The request messages of a stored completion, in order by default; limit, order, after.</summary>
    public static IResult Messages([FromRoute(Name = "completion_id")] string id, ApiContext api, ResponseStore store, string? limit, string? order, string? after)
    {
        ItemPages.Check(limit, order);
        var stored = Read(store, api.Owner, id);
        var (page, more) = ItemPages.PageOf(stored.Messages, m => m.Id, limit, order ?? "asc", after, null, "completion");
        return TypedResults.Json(new ChatMessageListDto("list", page, page.FirstOrDefault()?.Id, page.LastOrDefault()?.Id, more), StoredChatJson.Default.ChatMessageListDto);
    }

    /// <summary>Replaces the metadata (the only thing that changes).</summary>
    public static async Task<IResult> Update([FromRoute(Name = "completion_id")] string id, HttpContext context, ApiContext api, ResponseStore store)
    {
        var body = await RequestReader.ReadAsync(context, StoredChatJson.Default.UpdateChatCompletionRequest);
        if (body.Metadata is null) throw ApiError.Invalid("metadata is required.", "metadata");
        var metadata = ResponseRequestValidation.Metadata(body.Metadata);
        var stored = Read(store, api.Owner, id) with { Metadata = metadata };
        store.Put(api.Owner, id, stored, StoredChatJson.Default.StoredChatCompletion);
        EditIndex(store, api.Owner, entries =>
        {
            int at = entries.FindIndex(e => e.Id == id);
            if (at >= 0) entries[at] = entries[at] with { Metadata = metadata };
        });
        return TypedResults.Json(Shown(stored), OpenAiJson.Default.ChatCompletionResponse);
    }

    public static IResult Delete([FromRoute(Name = "completion_id")] string id, ApiContext api, ResponseStore store)
    {
        Read(store, api.Owner, id);
        store.Delete(api.Owner, id);
        EditIndex(store, api.Owner, entries => entries.RemoveAll(e => e.Id == id));
        return TypedResults.Json(new ChatCompletionDeletedDto("chat.completion.deleted", id, true), StoredChatJson.Default.ChatCompletionDeletedDto);
    }
}
