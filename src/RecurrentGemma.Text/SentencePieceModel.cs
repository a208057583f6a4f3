namespace RecurrentGemma.Text;

/// <summary>SentencePiece piece types (sentencepiece_model.proto).</summary>
public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

/// <summary>One vocabulary entry.</summary>
public readonly record struct Piece(string Text, float Score, PieceType Type);

/// <summary>
/// The parts of a SentencePiece <c>tokenizer.model</c> (a protobuf ModelProto) that encoding and
/// decoding need: pieces with score and type, and the normalizer flags. Read with a minimal
/// protobuf walker so that user-defined pieces come from the file, never from a hard-coded list.
/// </summary>
public sealed class SentencePieceModel
{
    public IReadOnlyList<Piece> Pieces { get; }
    public bool AddDummyPrefix { get; }
    public bool RemoveExtraWhitespaces { get; }
    public bool EscapeWhitespaces { get; }
    public bool ByteFallback { get; }
    public string UnknownSurface { get; }

    SentencePieceModel(List<Piece> pieces, bool addDummyPrefix, bool removeExtraWhitespaces, bool escapeWhitespaces, bool byteFallback, string unknownSurface)
    {
        Pieces = pieces; AddDummyPrefix = addDummyPrefix; RemoveExtraWhitespaces = removeExtraWhitespaces;
        EscapeWhitespaces = escapeWhitespaces; ByteFallback = byteFallback; UnknownSurface = unknownSurface;
    }

    public static SentencePieceModel Parse(ReadOnlySpan<byte> proto, string source = "tokenizer.model")
    {
        var pieces = new List<Piece>();
        bool addDummyPrefix = true, removeExtra = true, escape = true, byteFallback = false;
        string unkSurface = " \u2047 ";
        try
        {
            var reader = new ProtoReader(proto);
            while (reader.Next(out int field, out int wire))
            {
                if (field == 1 && wire == 2) pieces.Add(ParsePiece(reader.Bytes()));
                else if (field == 2 && wire == 2)
                {
                    var trainer = new ProtoReader(reader.Bytes());
                    while (trainer.Next(out int f, out int w))
                    {
                        if (f == 35 && w == 0) byteFallback = trainer.Varint() != 0;
                        else if (f == 44 && w == 2) unkSurface = System.Text.Encoding.UTF8.GetString(trainer.Bytes());
                        else trainer.Skip(w);
                    }
                }
                else if (field == 3 && wire == 2)
                {
                    var normalizer = new ProtoReader(reader.Bytes());
                    while (normalizer.Next(out int f, out int w))
                    {
                        if (f == 3 && w == 0) addDummyPrefix = normalizer.Varint() != 0;
                        else if (f == 4 && w == 0) removeExtra = normalizer.Varint() != 0;
                        else if (f == 5 && w == 0) escape = normalizer.Varint() != 0;
                        else normalizer.Skip(w);
                    }
                }
                else reader.Skip(wire);
            }
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidDataException)
        {
            throw new InvalidDataException($"{source}: not a valid SentencePiece model ({e.Message})", e);
        }
        if (pieces.Count == 0) throw new InvalidDataException($"{source}: not a valid SentencePiece model (no pieces)");
        return new SentencePieceModel(pieces, addDummyPrefix, removeExtra, escape, byteFallback, unkSurface);
    }

    static Piece ParsePiece(ReadOnlySpan<byte> bytes)
    {
        string text = "";
        float score = 0;
        var type = PieceType.Normal;
        var r = new ProtoReader(bytes);
        while (r.Next(out int f, out int w))
        {
            if (f == 1 && w == 2) text = System.Text.Encoding.UTF8.GetString(r.Bytes());
            else if (f == 2 && w == 5) score = r.Fixed32();
            else if (f == 3 && w == 0) type = (PieceType)r.Varint();
            else r.Skip(w);
        }
        return new Piece(text, score, type);
    }

    /// <summary>Forward-only protobuf wire-format reader (varint, 32/64-bit, length-delimited).</summary>
    ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        readonly ReadOnlySpan<byte> _data = data;
        int _pos;

        public bool Next(out int field, out int wire)
        {
            if (_pos >= _data.Length) { field = wire = 0; return false; }
            ulong key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            return true;
        }

        public ulong Varint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = _data[_pos++];
                result |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return result;
            }
            throw new InvalidDataException("varint too long");
        }

        public float Fixed32()
        {
            float v = BitConverter.ToSingle(_data.Slice(_pos, 4));
            _pos += 4;
            return v;
        }

        public ReadOnlySpan<byte> Bytes()
        {
            int len = checked((int)Varint());
            var s = _data.Slice(_pos, len);
            _pos += len;
            return s;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: _pos += 8; break;
                case 2: Bytes(); break;
                case 5: _pos += 4; break;
                default: throw new InvalidDataException($"unsupported wire type {wire}");
            }
            if (_pos > _data.Length) throw new InvalidDataException("truncated message");
        }
    }
}
