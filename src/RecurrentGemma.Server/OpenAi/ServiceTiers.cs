namespace RecurrentGemma.Server.OpenAi;

/// <summary>
/// OpenAI's service_tier mapped onto the engine's admission priority (vLLM's priority field): a
/// "flex" request waits behind default ones (batch work that can be slow), a "priority" one goes
/// ahead of them; running sequences are never preempted, so a tier changes only how long a request
/// waits for a place. An explicit priority wins over the tier. The answer reports the tier used.
/// </summary>
public static class ServiceTiers
{
    public const int FlexPriority = 1, PriorityPriority = -1;
    static readonly string[] Known = ["auto", "default", "flex", "scale", "priority"];

    /// <summary>The admission priority of a tier (0 for auto, default, scale or none).</summary>
    public static int Priority(string? tier) => Check(tier) switch
    {
        "flex" => FlexPriority,
        "priority" => PriorityPriority,
        _ => 0,
    };

    /// <summary>The tier the answer reports: flex or priority as asked, otherwise default.</summary>
    public static string Name(string? tier) => Check(tier) is "flex" or "priority" ? tier! : "default";

    static string? Check(string? tier) => tier is null || Known.Contains(tier) ? tier
        : throw ApiError.Invalid($"service_tier '{tier}' is not one of {string.Join(", ", Known)}.", "service_tier");
}
