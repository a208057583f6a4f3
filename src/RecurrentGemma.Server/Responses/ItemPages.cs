using RecurrentGemma.Server.OpenAi;

namespace RecurrentGemma.Server.Responses;

/// <summary>
/// One page of a list of items, as OpenAI's list endpoints page them: newest first unless
/// order=asc, at most limit (1–100, default 20) items, starting after the item <c>after</c> and
/// ending before the item <c>before</c>. The limit is read as text, so that a value that is no
/// number is a 400 naming it (bound as an int, the framework's bare 400 said nothing).
/// </summary>
public static class ItemPages
{
    /// <summary>Checks limit and order (before the list is read: a bad query is a 400 even for an unknown id).</summary>
    public static int Check(string? limit, string? order)
    {
        int take = 20;
        if (limit is not null && !int.TryParse(limit, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out take))
            throw ApiError.Invalid($"limit must be an integer between 1 and 100, got '{(limit.Length > 20 ? limit[..20] + "…" : limit)}'.", "limit");
        if (take is < 1 or > 100) throw ApiError.Invalid($"limit must be between 1 and 100, got {take}.", "limit");
        if (order is not (null or "asc" or "desc")) throw ApiError.Invalid($"order must be asc or desc, got '{order}'.", "order");
        return take;
    }

    /// <param name="items">Oldest first.</param>
    /// <param name="limit">As sent in the query.</param>
    /// <param name="order">asc or desc (the default here).</param>
    /// <param name="after">The id of the item the page starts after.</param>
    /// <param name="before">The id of the item the page ends before.</param>
    /// <param name="owner">What the items belong to, for the error message ("response", "conversation").</param>
    public static ResponseItemListDto Page(IReadOnlyList<ResponseItemDto> items, string? limit, string? order, string? after, string? before, string owner)
    {
        var (page, more) = PageOf(items, i => i.Id, limit, order ?? "desc", after, before, owner);
        return new ResponseItemListDto("list", page, page.FirstOrDefault()?.Id, page.LastOrDefault()?.Id, more);
    }

    /// <summary>One page of any list whose entries have ids: <paramref name="order"/> is asc (the
    /// list's own order) or desc; returns the page and whether more follow.</summary>
    public static (List<T> Page, bool HasMore) PageOf<T>(IReadOnlyList<T> items, Func<T, string> id, string? limit, string order, string? after, string? before, string owner)
    {
        int take = Check(limit, order);
        var ordered = order == "asc" ? items.ToList() : Enumerable.Reverse(items).ToList();
        if (after is not null)
        {
            int at = ordered.FindIndex(i => id(i) == after);
            if (at < 0) throw ApiError.Invalid($"after '{after}' is not an item of this {owner}.", "after");
            ordered = ordered[(at + 1)..];
        }
        if (before is not null)
        {
            int at = ordered.FindIndex(i => id(i) == before);
            if (at < 0) throw ApiError.Invalid($"before '{before}' is not an item of this {owner}.", "before");
            ordered = ordered[..at];
        }
        return (ordered.Take(take).ToList(), ordered.Count > take);
    }
}
