namespace RecurrentGemma.Text;

/// <summary>What one piece of streamed text produced: text safe to show, and the stop string
/// that ended generation, if one matched.</summary>
public readonly record struct StopScan(string Emit, string? MatchedStop);

/// <summary>
/// Finds stop strings in streamed text, across token boundaries. Text that could still become
/// a stop string is held back until it either completes one (then it and everything after is
/// dropped, and generation should end) or can no longer (then it is released). The stop
/// string itself is not emitted, unless asked for (vLLM's include_stop_str_in_output); what
/// follows it never is. OpenAI allows at most <see cref="MaxStops"/> stop strings.
/// </summary>
public sealed class StopSequenceMatcher
{
    public const int MaxStops = 4;

    readonly string[] _stops;
    readonly bool _includeStop;
    string _held = "";
    bool _stopped;

    /// <param name="includeStop">emit the matched stop string at the end of the text.</param>
    public StopSequenceMatcher(IReadOnlyList<string>? stops, bool includeStop = false)
    {
        _includeStop = includeStop;
        stops ??= [];
        if (stops.Count > MaxStops)
            throw new ArgumentException($"at most {MaxStops} stop sequences are allowed, got {stops.Count}", nameof(stops));
        if (stops.Any(string.IsNullOrEmpty))
            throw new ArgumentException("stop sequences must not be empty", nameof(stops));
        _stops = stops.Distinct(StringComparer.Ordinal).ToArray();
    }

    public bool Stopped => _stopped;

    /// <summary>Text currently held back because it may be the start of a stop string.</summary>
    public string Held => _held;

    public StopScan Push(string delta)
    {
        if (_stopped) return new StopScan("", null);
        if (_stops.Length == 0) return new StopScan(delta, null);
        var text = _held + delta;

        // The earliest complete stop wins (on the same start, the longest).
        int best = -1;
        string? matched = null;
        foreach (var stop in _stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (best < 0 || at < best || (at == best && stop.Length > matched!.Length)))
            {
                best = at;
                matched = stop;
            }
        }
        if (matched is not null)
        {
            _stopped = true;
            _held = "";
            return new StopScan(text[..(_includeStop ? best + matched.Length : best)], matched);
        }

        // Hold back the longest tail that is a proper prefix of some stop string.
        int hold = 0;
        foreach (var stop in _stops)
            for (int k = Math.Min(stop.Length - 1, text.Length); k > hold; k--)
                if (text.AsSpan(text.Length - k).SequenceEqual(stop.AsSpan(0, k))) { hold = k; break; }
        _held = text[(text.Length - hold)..];
        return new StopScan(text[..(text.Length - hold)], null);
    }

    /// <summary>Generation ended without a stop: release what was held back.</summary>
    public string Flush()
    {
        var rest = _stopped ? "" : _held;
        _held = "";
        return rest;
    }
}
