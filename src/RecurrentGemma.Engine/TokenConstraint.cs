namespace RecurrentGemma.Engine;

/// <summary>
/// Limits which ids a choice may sample next (structured output, tool calls): the engine stays
/// token-ids-only and asks this, per row and step, for a bit mask over the vocabulary, applies it
/// inside the batched sampler, and reports each sampled id back. One instance per choice
/// (<see cref="Fork"/> for n > 1). Called on the engine thread, and for masks also from the
/// thread pool while the forward runs.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>Bit i set: id i may come next. Includes the request's stop ids once the
    /// constrained text is complete and may end there.</summary>
    ulong[] Allowed();

    /// <summary>Records a sampled id; false if it was not allowed (the choice then fails).</summary>
    bool Advance(int tokenId);

    /// <summary>Complete, and nothing may follow: the choice ends now with finish reason stop.</summary>
    bool MustStop { get; }

    /// <summary>An independent copy in the same state (another choice of the request).</summary>
    ITokenConstraint Fork();
}
