using System.Security.Cryptography;

namespace RecurrentGemma.Engine;

/// <summary>
/// Encryption at rest for stored records (parked states, stored responses) with the
/// Sessions:EncryptionKey (32 bytes): AES-GCM, laid out as "RGSEAL01", a random 12-byte nonce,
/// the 16-byte tag, then the ciphertext. Without a key, records pass through unchanged. A record
/// that does not open — wrong key, tampering, or sealed when no key is configured (and the
/// reverse) — throws <see cref="InvalidDataException"/>, which every reader treats like a bad
/// checksum: the record is not used.
/// </summary>
public sealed class RecordSeal
{
    static readonly byte[] SealedMagic = "RGSEAL01"u8.ToArray();
    readonly byte[]? _key;

    public RecordSeal(byte[]? key)
    {
        if (key is not null && key.Length != 32) throw new ArgumentException("the session encryption key must be 32 bytes (base64 of 32 random bytes)");
        _key = key;
    }

    public bool Encrypts => _key is not null;

    /// <summary>The length of the marker that starts a sealed record.</summary>
    public static int MarkerLength => SealedMagic.Length;

    /// <summary>Whether a record starting with these bytes (at least <see cref="MarkerLength"/>) is sealed.</summary>
    public static bool IsSealed(ReadOnlySpan<byte> start) => start.Length >= SealedMagic.Length && start[..SealedMagic.Length].SequenceEqual(SealedMagic);

    public byte[] Seal(byte[] plain)
    {
        if (_key is null) return plain;
        var sealedBytes = new byte[SealedMagic.Length + 12 + 16 + plain.Length];
        SealedMagic.CopyTo(sealedBytes, 0);
        var nonce = sealedBytes.AsSpan(SealedMagic.Length, 12);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, 16);
        aes.Encrypt(nonce, plain, sealedBytes.AsSpan(SealedMagic.Length + 28), sealedBytes.AsSpan(SealedMagic.Length + 12, 16));
        return sealedBytes;
    }

    public byte[] Open(byte[] stored)
    {
        bool isSealed = stored.Length >= SealedMagic.Length + 28 && stored.AsSpan(0, SealedMagic.Length).SequenceEqual(SealedMagic);
        if (_key is null) return isSealed ? throw new InvalidDataException("encrypted, and no key is configured") : stored;
        if (!isSealed) throw new InvalidDataException("not encrypted, but a key is configured");
        var plain = new byte[stored.Length - SealedMagic.Length - 28];
        try
        {
            using var aes = new AesGcm(_key, 16);
            aes.Decrypt(stored.AsSpan(SealedMagic.Length, 12), stored.AsSpan(SealedMagic.Length + 28), stored.AsSpan(SealedMagic.Length + 12, 16), plain);
        }
        catch (AuthenticationTagMismatchException) { throw new InvalidDataException("does not decrypt with this key"); }
        return plain;
    }
}
