using System.Buffers;
using System.Text;

namespace RecurrentGemma.Text;

/// <summary>
/// Turns ids into text one id at a time, emitting only what is final: byte-fallback pieces wait
/// until they form a complete UTF-8 character, so a stream never shows half a character or a
/// U+FFFD for a sequence that is merely incomplete. Invalid bytes become one U+FFFD each, as in
/// SentencePiece, so the concatenation of everything emitted (plus <see cref="Flush"/>) equals
/// <see cref="GemmaTokenizer.Decode"/>.
/// </summary>
public sealed class IncrementalDetokenizer
{
    readonly GemmaTokenizer _tokenizer;
    readonly List<byte> _pending = new(4);
    readonly StringBuilder _out = new();

    internal IncrementalDetokenizer(GemmaTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <summary>True while bytes of an unfinished character are held back.</summary>
    public bool HasPendingBytes => _pending.Count > 0;

    /// <summary>Feeds one id; returns the text that became final (often empty for byte pieces).</summary>
    public string Push(int id)
    {
        var surface = _tokenizer.Surface(id);
        _out.Clear();
        if (surface is null)
        {
            _pending.Add((byte)_tokenizer.ByteValue(id));
            Drain(final: false);
        }
        else if (surface.Length > 0 || !_tokenizer.IsControl(id))
        {
            // Any text piece ends a byte run: what is left of it can no longer complete.
            Drain(final: true);
            _out.Append(surface);
        }
        // Control ids print nothing and do not interrupt a byte run.
        return _out.ToString();
    }

    /// <summary>Ends the stream: bytes still pending are invalid (one U+FFFD each).</summary>
    public string Flush()
    {
        _out.Clear();
        Drain(final: true);
        return _out.ToString();
    }

    void Drain(bool final)
    {
        Span<byte> buf = stackalloc byte[4];
        while (_pending.Count > 0)
        {
            int n = Math.Min(4, _pending.Count);
            for (int i = 0; i < n; i++) buf[i] = _pending[i];
            var status = Rune.DecodeFromUtf8(buf[..n], out var rune, out int consumed);
            if (status == OperationStatus.Done)
            {
                _out.Append(rune.ToString());
                _pending.RemoveRange(0, consumed);
            }
            else if (status == OperationStatus.NeedMoreData && !final)
                return;                                    // wait for the rest of the character
            else
            {
                _out.Append('\uFFFD');                     // SentencePiece: one U+FFFD per bad byte
                _pending.RemoveAt(0);
            }
        }
    }
}
