namespace RecurrentGemma.Text.Demo;

/// <summary>
/// The project's own small SentencePiece model (4096 pieces, Gemma's special ids and user-defined
/// pieces, byte fallback), embedded in the assembly for the out-of-the-box demo model. Trained by
/// scripts/train_demo_tokenizer.py; Gemma's real tokenizer is not ours to ship.
/// </summary>
public static class DemoTokenizer
{
    const string ResourceName = "RecurrentGemma.Text.demo-tokenizer.model";

    public static byte[] ModelBytes()
    {
        using var stream = typeof(DemoTokenizer).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"embedded resource {ResourceName} is missing from the build");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    public static GemmaTokenizer Load() => GemmaTokenizer.FromBytes(ModelBytes(), "embedded demo-tokenizer.model");
}
