namespace RecurrentGemma.Text.Grammar;

/// <summary>
/// Where a parse can be: a set of stacks, each a chain of positions inside rule alternatives whose
/// top is the next terminal to match (a pushdown automaton run on all alternatives at once, so
/// ambiguity such as anyOf costs stacks, not backtracking). <see cref="Complete"/>: some parse
/// has consumed the whole root rule. States are interned per grammar, so equal states are the
/// same object and the matcher can cache per state — what makes masks cheap for the long runs
/// of identical states inside a JSON string.
/// </summary>
public sealed class MatchState
{
    internal MatchState(int id, GrammarMatcher.Frame[] tops, bool complete)
    {
        Id = id;
        Tops = tops;
        Complete = complete;
    }

    internal int Id { get; }
    internal GrammarMatcher.Frame[] Tops { get; }
    /// <summary>The state after each byte, filled as they are asked for: the trie walk reads
    /// these without a lock (a reference is written whole), which keeps a walk over half a
    /// million trie nodes to a few milliseconds.</summary>
    internal readonly MatchState?[] Next = new MatchState?[256];
    /// <summary>What <see cref="GrammarMatcher.PlainBudget"/> found, once asked (null: not yet).</summary>
    internal GrammarMatcher.PlainInfo? Plain;
    /// <summary>The input so far is a whole sentence of the grammar.</summary>
    public bool Complete { get; }
    /// <summary>Some byte may still follow.</summary>
    public bool CanContinue => Tops.Length > 0;
    /// <summary>No parse is left: the input so far is not a prefix of any sentence.</summary>
    public bool IsDead => Tops.Length == 0 && !Complete;
}

/// <summary>
/// Runs a <see cref="ByteGrammar"/> over bytes. Thread-safe: the engine advances rows while masks
/// for others are computed in the background, so the intern tables take a lock.
/// </summary>
public sealed class GrammarMatcher
{
    /// <summary>A position in a rule alternative, with the position to return to (interned).</summary>
    internal sealed class Frame(int id, int rule, int alt, int pos, Frame? parent)
    {
        public readonly int Id = id, Rule = rule, Alt = alt, Pos = pos;
        public readonly Frame? Parent = parent;
    }

    const int MaxExpansionDepth = 4096;
    const int MaxCachedStates = 200_000;

    readonly ByteGrammar _grammar;
    readonly object _gate = new();
    readonly Dictionary<(int Rule, int Alt, int Pos, int Parent), Frame> _frames = [];
    readonly Dictionary<string, MatchState> _states = [];
    readonly Dictionary<(int State, byte Byte), MatchState> _steps = [];
    int _nextStateId;

    public GrammarMatcher(ByteGrammar grammar)
    {
        if (grammar.Root < 0) throw new ArgumentException("the grammar has no root rule", nameof(grammar));
        _grammar = grammar;
        Start = Expand([Intern(-1, -1, 0, null)]);   // a virtual frame whose one symbol is the root
    }

    public ByteGrammar Grammar => _grammar;
    public MatchState Start { get; }

    /// <summary>The state after one more byte (dead if the byte cannot come next).</summary>
    public MatchState Advance(MatchState state, byte b)
    {
        if (state.Next[b] is { } cached) return cached;
        lock (_gate)
        {
            if (_steps.TryGetValue((state.Id, b), out var known)) return state.Next[b] = known;
            var next = new List<Frame>();
            foreach (var top in state.Tops)
                if (_grammar.TerminalSet(SymbolAt(top)).Contains(b))
                    next.Add(Intern(top.Rule, top.Alt, top.Pos + 1, top.Parent));
            var result = Expand(next);
            if (_steps.Count > MaxCachedStates) _steps.Clear();
            _steps[(state.Id, b)] = result;
            return state.Next[b] = result;
        }
    }

    public MatchState Advance(MatchState state, ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
        {
            state = Advance(state, b);
            if (state.IsDead) break;
        }
        return state;
    }

    public bool Accepts(ReadOnlySpan<byte> bytes) => Advance(Start, bytes).Complete;

    /// <summary>The bytes that can begin a plain character (see <see cref="ByteGrammar.PlainCharRules"/>).</summary>
    static readonly ByteSet PlainStart = ByteSet.Range([], [(0x20, 0x7F), (0xC2, 0xF4)]).Except(ByteSet.Of((byte)'"', (byte)'\\'));

    /// <summary>
    /// k ≥ 0 when this state is inside a string with room for k more characters (int.MaxValue:
    /// no maximum) and a run of plain characters can only go on through that string: then a run
    /// of c plain characters is accepted exactly when c ≤ k (each one moves to the same kind of
    /// state with k − 1). Every top is either a plain-character rule at its start, directly under
    /// a counted position of the repetition (<see cref="ByteGrammar.CharBudget"/>), or a terminal
    /// no plain character can begin with (the closing quote, an escape).
    /// −1 for any other state (the mask is then found by walking the whole vocabulary).
    /// </summary>
    public int PlainBudget(MatchState state) => Plain(state).Budget;

    /// <summary>
    /// For a state with a <see cref="PlainBudget"/>: what its mask depends on, given that no id is
    /// longer than <paramref name="horizon"/> characters — the budget and the characters still
    /// required (each capped at the horizon), the character rule, what follows the repetition, and
    /// the other paths (the closing quote's). States with equal keys accept exactly the same ids,
    /// so e.g. every position deep inside a long string shares one mask. Null without a budget.
    /// </summary>
    public string? PlainKey(MatchState state, int horizon)
    {
        var p = Plain(state);
        if (p.Budget < 0) return null;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{p.CharRule}|{Math.Min(p.Budget, horizon)}|{Math.Min(p.Required, horizon)}|{p.Continuation}|{p.Others}");
    }

    internal sealed record PlainInfo(int Budget, int Required, int CharRule, int Continuation, string Others);
    static readonly PlainInfo NoPlain = new(-1, 0, -1, -1, "");

    PlainInfo Plain(MatchState state)
    {
        if (state.Plain is { } known) return known;
        int budget = -1, required = 0, charRule = -1, continuation = -1;
        var others = new List<int>();
        bool ok = true;
        foreach (var f in state.Tops)
        {
            if (_grammar.TerminalSet(SymbolAt(f)).And(PlainStart).IsEmpty)
            {
                // A path no plain character can begin: part of the key unless it lies inside a
                // counted character (an escape), whose fate the budget already decides.
                if (!InsideCounted(f)) others.Add(f.Id);
                continue;
            }
            if (f.Pos == 0 && f.Rule >= 0 && _grammar.PlainCharRules.Contains(f.Rule)
                && f.Parent is { Alt: 0 } at && at.Rule >= 0 && _grammar.CharBudget.TryGetValue((at.Rule, at.Pos), out var k)
                && (budget < 0 || (budget == k && charRule == f.Rule && continuation == (at.Parent?.Id ?? -1))))
            {
                budget = k;
                required = _grammar.CharsRequired[(at.Rule, at.Pos)];
                charRule = f.Rule;
                continuation = at.Parent?.Id ?? -1;
                continue;
            }
            ok = false;
            break;
        }
        others.Sort();
        var info = ok && budget >= 0 ? new PlainInfo(budget, required, charRule, continuation, string.Join(',', others)) : NoPlain;
        state.Plain = info;
        return info;
    }

    bool InsideCounted(Frame f)
    {
        for (var p = f.Parent; p is not null; p = p.Parent)
            if (p.Rule >= 0 && p.Alt == 0 && _grammar.CharBudget.ContainsKey((p.Rule, p.Pos))) return true;
        return false;
    }

    int SymbolAt(Frame f) => f.Rule < 0 ? _grammar.Root : _grammar.Rules[f.Rule][f.Alt][f.Pos];

    int AltLength(Frame f) => f.Rule < 0 ? 1 : _grammar.Rules[f.Rule][f.Alt].Length;

    Frame Intern(int rule, int alt, int pos, Frame? parent)
    {
        var key = (rule, alt, pos, parent?.Id ?? -1);
        if (!_frames.TryGetValue(key, out var f))
        {
            f = new Frame(_frames.Count, rule, alt, pos, parent);
            _frames[key] = f;
        }
        return f;
    }

    /// <summary>Closes a set of frames over rule expansion and returns: the interned state whose
    /// tops all point at terminals.</summary>
    MatchState Expand(List<Frame> frames)
    {
        var tops = new HashSet<Frame>();
        bool complete = false;
        var visiting = new HashSet<Frame>();
        foreach (var f in frames) Close(f, tops, ref complete, visiting, 0);
        var sorted = tops.OrderBy(f => f.Id).ToArray();
        var key = (complete ? "c:" : "o:") + string.Join(',', sorted.Select(f => f.Id));
        if (!_states.TryGetValue(key, out var state))
        {
            if (_states.Count > MaxCachedStates) { _states.Clear(); _steps.Clear(); }
            state = new MatchState(++_nextStateId, sorted, complete);
            _states[key] = state;
        }
        return state;
    }

    void Close(Frame f, HashSet<Frame> tops, ref bool complete, HashSet<Frame> visiting, int depth)
    {
        if (depth > MaxExpansionDepth) throw new GrammarException("the grammar nests too deeply (a rule that can repeat without consuming input?)", "");
        if (!visiting.Add(f)) return;   // already expanded in this closure (left recursion or a shared path)
        if (f.Pos == AltLength(f))
        {
            if (f.Parent is null) complete = true;
            else Close(Intern(f.Parent.Rule, f.Parent.Alt, f.Parent.Pos + 1, f.Parent.Parent), tops, ref complete, visiting, depth + 1);
            return;
        }
        int symbol = SymbolAt(f);
        if (symbol < 0) { tops.Add(f); return; }
        // Tail call: a rule referenced last in its alternative returns straight to our caller,
        // so right recursion (S → x S) keeps the stack flat and a string's states repeat — which
        // is what lets the per-state mask cache hit.
        var returnTo = f.Pos == AltLength(f) - 1 ? f.Parent : f;
        var alternatives = _grammar.Rules[symbol];
        for (int a = 0; a < alternatives.Length; a++)
            Close(Intern(symbol, a, 0, returnTo), tops, ref complete, visiting, depth + 1);
    }
}
