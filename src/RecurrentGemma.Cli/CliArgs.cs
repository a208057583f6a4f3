namespace RecurrentGemma.Cli;

/// <summary>A usage mistake: printed with the command's help, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// "--name value" and "--flag" options after a command word. Small on purpose: every command
/// declares what it reads, and an option nobody read is reported as unknown.
/// </summary>
public sealed class CliArgs
{
    readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);
    readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public string Command { get; }

    public CliArgs(IReadOnlyList<string> args)
    {
        Command = args.Count > 0 ? args[0] : "help";
        for (int i = 1; i < args.Count; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--")) throw new UsageException($"unexpected argument '{a}'");
            var eq = a.IndexOf('=');
            if (eq > 0) { _options[a[2..eq]] = a[(eq + 1)..]; continue; }
            var name = a[2..];
            string? value = i + 1 < args.Count && !args[i + 1].StartsWith("--") ? args[++i] : null;
            _options[name] = value;
        }
    }

    public string? Get(string name)
    {
        _read.Add(name);
        return _options.TryGetValue(name, out var v) ? v ?? throw new UsageException($"--{name} needs a value") : null;
    }

    public string Require(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public bool Flag(string name)
    {
        _read.Add(name);
        return _options.ContainsKey(name);
    }

    public int Int(string name, int fallback)
    {
        var v = Get(name);
        if (v is null) return fallback;
        return int.TryParse(v, out var n) && n >= 0 ? n : throw new UsageException($"--{name} must be a non-negative integer, got '{v}'");
    }

    /// <summary>A comma-separated list of integers, e.g. "--tokens 2,17,42".</summary>
    public long[]? Ids(string name)
    {
        var v = Get(name);
        if (v is null) return null;
        try { return v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(long.Parse).ToArray(); }
        catch (FormatException) { throw new UsageException($"--{name} must be comma-separated integers, got '{v}'"); }
        catch (OverflowException) { throw new UsageException($"--{name} has a value out of range: '{v}'"); }
    }

    /// <summary>Fails on options that no command read (typos must not pass silently).</summary>
    public void EnsureAllRead()
    {
        var unknown = _options.Keys.Where(k => !_read.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException("unknown option(s): " + string.Join(", ", unknown.Select(u => "--" + u)));
    }
}
