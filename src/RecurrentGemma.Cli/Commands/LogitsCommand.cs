using System.Text.Json;
using RecurrentGemma.Model;

namespace RecurrentGemma.Cli.Commands;

/// <summary><c>rgemma logits</c>: one row of vocabulary logits per input token (full prefill).</summary>
static class LogitsCommand
{
    public static int Run(CliArgs args, TextWriter stdout)
    {
        using var model = ModelArgs.Load(args);
        var tokens = ModelArgs.Tokens(args, model.Config);
        args.EnsureAllRead();

        using var state = model.CreateState(1);
        using var logits = model.Forward([tokens], state, [0], LogitsSelection.All);
        using var cpu = logits[0].cpu().contiguous();
        var data = cpu.data<float>().ToArray();
        int v = model.Config.VocabSize;

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteStartArray("logits");
            for (int t = 0; t < tokens.Length; t++)
            {
                json.WriteStartArray();
                for (int i = 0; i < v; i++) json.WriteNumberValue(data[t * v + i]);
                json.WriteEndArray();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        stdout.WriteLine(System.Text.Encoding.UTF8.GetString(stream.ToArray()));
        return 0;
    }
}
