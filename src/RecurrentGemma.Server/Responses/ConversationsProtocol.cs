using System.Text.Json;
using System.Text.Json.Serialization;

namespace RecurrentGemma.Server.Responses;

// The Conversations API's shapes (/v1/conversations), snake_case on the wire. A conversation is a
// list of items (the Responses API's items) that responses run with "conversation" read and extend.

/// <summary>POST /v1/conversations body.</summary>
public sealed class CreateConversationRequest
{
    /// <summary>Up to 20 items to start with (messages, function calls and their outputs).</summary>
    public JsonElement? Items { get; set; }
    public Dictionary<string, string>? Metadata { get; set; }
}

/// <summary>POST /v1/conversations/{id} body: the metadata replaces the old one.</summary>
public sealed class UpdateConversationRequest
{
    public Dictionary<string, string>? Metadata { get; set; }
}

/// <summary>POST /v1/conversations/{id}/items body.</summary>
public sealed class CreateConversationItemsRequest
{
    /// <summary>1 to 20 items, appended in order.</summary>
    public JsonElement? Items { get; set; }
}

/// <summary>The conversation object.</summary>
public sealed record ConversationDto
{
    public required string Id { get; init; }
    public string Object { get; init; } = "conversation";
    public required long CreatedAt { get; init; }
    public Dictionary<string, string> Metadata { get; init; } = [];
}

/// <summary>What a response that ran in a conversation says of it: {"id": "conv_…"}.</summary>
public sealed record ConversationRefDto(string Id);

public sealed record ConversationDeletedDto(string Id, string Object, bool Deleted);

/// <summary>What the store keeps of a conversation: the object, its items (oldest first) and the
/// ids this server sampled for each answer in it (keyed by the answer's first output item's id),
/// so that the next response renders the answers exactly as the parked state read them.</summary>
public sealed record StoredConversation
{
    public required ConversationDto Conversation { get; init; }
    public List<ResponseItemDto> Items { get; init; } = [];
    public Dictionary<string, int[]> SampledIds { get; init; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(CreateConversationRequest))]
[JsonSerializable(typeof(UpdateConversationRequest))]
[JsonSerializable(typeof(CreateConversationItemsRequest))]
[JsonSerializable(typeof(ConversationDto))]
[JsonSerializable(typeof(ConversationDeletedDto))]
[JsonSerializable(typeof(StoredConversation))]
[JsonSerializable(typeof(ResponseItemDto))]
[JsonSerializable(typeof(ResponseItemListDto))]
public sealed partial class ConversationsJson : JsonSerializerContext;
