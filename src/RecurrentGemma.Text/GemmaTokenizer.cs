using System.Runtime.CompilerServices;
using Microsoft.ML.Tokenizers;

[assembly: InternalsVisibleTo("RecurrentGemma.Text.Tests")]
[assembly: InternalsVisibleTo("rgemma")]

namespace RecurrentGemma.Text;

/// <summary>
/// Gemma's SentencePiece tokenizer, exact to SentencePiece. Encoding: spaces become ▁; the
/// model's USER_DEFINED pieces are cut out atomically (longest first); each remaining segment is
/// BPE-encoded by Microsoft.ML.Tokenizers — except segments where equal-score merges overlap
/// (repeated runs), where the library's rightmost tie-break differs from SentencePiece's leftmost
/// one; those go through <see cref="SentencePieceBpe"/>. <see cref="Encode"/> never adds BOS.
/// Decoding follows SentencePiece: control ids vanish, unknown shows as " ⁇ ", byte pieces join
/// into UTF-8 with one U+FFFD per invalid byte.
/// </summary>
public sealed class GemmaTokenizer
{
    readonly SentencePieceModel _model;
    readonly SentencePieceTokenizer _library;
    readonly SentencePieceBpe _bpe;
    readonly UserDefinedPieces _userDefined;
    readonly string?[] _surfaces;   // decoded text per id; null for byte pieces
    readonly int[] _byteValue;      // byte value per id, −1 if not a byte piece

    public int VocabSize => _model.Pieces.Count;
    public int PadId { get; }
    public int EosId { get; }
    public int BosId { get; }
    public int UnknownId { get; }
    /// <summary>&lt;start_of_turn&gt; (106 in Gemma), or −1 when the vocabulary lacks it.</summary>
    public int StartOfTurnId { get; }
    /// <summary>&lt;end_of_turn&gt; (107 in Gemma), or −1 when the vocabulary lacks it.</summary>
    public int EndOfTurnId { get; }
    public SentencePieceModel Model => _model;
    /// <summary>The most UTF-8 bytes of text one token can stand for (at least 4: an unknown
    /// character is one token).</summary>
    public int MaxTokenBytes { get; }

    GemmaTokenizer(byte[] proto, string source)
    {
        _model = SentencePieceModel.Parse(proto, source);
        if (_model.RemoveExtraWhitespaces)
            throw new InvalidDataException($"{source}: normalizer remove_extra_whitespaces is not supported (Gemma's tokenizer keeps whitespace)");
        using (var stream = new MemoryStream(proto, writable: false))
            _library = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
        _bpe = new SentencePieceBpe(_model);
        _userDefined = new UserDefinedPieces(_model);

        int n = _model.Pieces.Count;
        _surfaces = new string?[n];
        _byteValue = new int[n];
        for (int i = 0; i < n; i++)
        {
            var p = _model.Pieces[i];
            _byteValue[i] = -1;
            switch (p.Type)
            {
                case PieceType.Control: _surfaces[i] = ""; break;
                case PieceType.Unknown: _surfaces[i] = _model.UnknownSurface; break;
                case PieceType.Byte:
                    _byteValue[i] = Convert.ToInt32(p.Text[3..5], 16);
                    _surfaces[i] = null;
                    break;
                default: _surfaces[i] = _model.EscapeWhitespaces ? p.Text.Replace('\u2581', ' ') : p.Text; break;
            }
        }
        MaxTokenBytes = Math.Max(4, _surfaces.Max(x => x is null ? 1 : System.Text.Encoding.UTF8.GetByteCount(x)));
        int Find(string piece, PieceType? type = null)
        {
            for (int i = 0; i < n; i++)
                if (_model.Pieces[i].Text == piece && (type is null || _model.Pieces[i].Type == type)) return i;
            return -1;
        }
        PadId = Find("<pad>"); EosId = Find("<eos>"); BosId = Find("<bos>"); UnknownId = Find("<unk>");
        StartOfTurnId = Find("<start_of_turn>"); EndOfTurnId = Find("<end_of_turn>");
        if (BosId < 0 || EosId < 0) throw new InvalidDataException($"{source}: the vocabulary has no <bos>/<eos> pieces");
    }

    public static GemmaTokenizer FromFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer model not found: {path}", path);
        return new GemmaTokenizer(File.ReadAllBytes(path), path);
    }

    public static GemmaTokenizer FromBytes(byte[] proto, string source = "tokenizer.model") => new(proto, source);

    /// <summary>Ids of the text, exactly as SentencePiece gives them; no BOS/EOS added.</summary>
    public List<int> Encode(string text) => Encode(text, markersAsText: false);

    /// <summary>
    /// Ids of untrusted text (chat message content): like <see cref="Encode(string)"/>, except
    /// that marker-like user-defined pieces (turn markers and the like, <see cref="MarkerIds"/>)
    /// typed in the text come out as ordinary text pieces, so only the template emits markers.
    /// </summary>
    public List<int> EncodeContent(string text) => Encode(text, markersAsText: true);

    /// <summary>User-defined pieces that act as markers: never produced by <see cref="EncodeContent"/>.</summary>
    public IReadOnlySet<int> MarkerIds => _userDefined.MarkerIds;

    List<int> Encode(string text, bool markersAsText)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        if (text.Length == 0) return ids;
        var normalized = Normalize(text);
        var parts = new List<(int Start, int Length, int Id)>();
        _userDefined.Split(normalized, parts, markersAsText);
        foreach (var (start, length, id) in parts)
        {
            if (id >= 0) { ids.Add(id); continue; }
            var segment = normalized.AsSpan(start, length);
            if (TiesCanOverlap(segment, _bpe.MaxPieceChars)) _bpe.Encode(segment, ids);
            else ids.AddRange(_library.EncodeToIds(segment.ToString()));
        }
        return ids;
    }

    /// <summary>The model's input for a text: BOS followed by its ids.</summary>
    public List<int> EncodeWithBos(string text)
    {
        var ids = Encode(text);
        ids.Insert(0, BosId);
        return ids;
    }

    /// <summary>Encodes with <see cref="SentencePieceBpe"/> only (the reference path; tests and benchmarks).</summary>
    internal List<int> EncodeExactOnly(string text)
    {
        var ids = new List<int>();
        var normalized = Normalize(text);
        var parts = new List<(int Start, int Length, int Id)>();
        _userDefined.Split(normalized, parts);
        foreach (var (start, length, id) in parts)
            if (id >= 0) ids.Add(id);
            else _bpe.Encode(normalized.AsSpan(start, length), ids);
        return ids;
    }

    string Normalize(string text)
    {
        var s = _model.EscapeWhitespaces ? text.Replace(' ', '\u2581') : text;
        return _model.AddDummyPrefix && s.Length > 0 ? "\u2581" + s : s;
    }

    /// <summary>
    /// Whether two equal-score candidate pairs can overlap in this segment, the only case where
    /// leftmost and rightmost tie-breaking differ. Overlapping pairs (X,Y) and (Y,Z) that form the
    /// same piece need XY = YZ, i.e. a stretch with period p = |X| of length ≥ 2p+1, p below the
    /// longest piece. Conservative: such segments take the exact path.
    /// </summary>
    internal static bool TiesCanOverlap(ReadOnlySpan<char> s, int maxPieceChars)
    {
        int maxPeriod = Math.Min(maxPieceChars - 1, s.Length / 2);
        for (int p = 1; p <= maxPeriod; p++)
        {
            int run = 0;
            for (int i = p; i < s.Length; i++)
            {
                if (s[i] == s[i - p]) { if (++run > p) return true; }
                else run = 0;
            }
        }
        return false;
    }

    /// <summary>SentencePiece's decode of a whole id sequence.</summary>
    public string Decode(IEnumerable<int> ids)
    {
        var d = CreateDetokenizer();
        var sb = new System.Text.StringBuilder();
        foreach (var id in ids) sb.Append(d.Push(id));
        sb.Append(d.Flush());
        return sb.ToString();
    }

    /// <summary>A streaming decoder that emits text only once it is final (never half a character).</summary>
    public IncrementalDetokenizer CreateDetokenizer() => new(this);

    public bool IsControl(int id) => (uint)id < (uint)_surfaces.Length && _model.Pieces[id].Type == PieceType.Control;

    public string PieceText(int id) => _model.Pieces[id].Text;

    internal string? Surface(int id) => (uint)id < (uint)_surfaces.Length
        ? _surfaces[id]
        : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_surfaces.Length - 1})");

    internal int ByteValue(int id) => _byteValue[id];
}
