namespace RecurrentGemma.Bench;

/// <summary>
/// HTTP/SSE benchmark of the server against the engine alone, on a random-weight model.
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- [--tokens 48] [--out docs/benchmarks.md]
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --loaders [--out docs/benchmarks.md]
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --charts [--images docs/images] [--out docs/benchmarks.md]
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --constrained [--out docs/benchmarks.md]
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --responses [--out docs/benchmarks.md]
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --soak [--minutes 10] [--streams 8] [--out docs/benchmarks.md]
/// </summary>
public static class BenchProgram
{
    public static async Task<int> Main(string[] args)
    {
        int tokens = 48;
        string? output = null;
        bool loaders = false, charts = false, soak = false, constrained = false, responses = false;
        double minutes = 10;
        int streams = 8;
        string images = "docs/images";
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--tokens" && i + 1 < args.Length) tokens = int.Parse(args[++i]);
            else if (args[i] == "--out" && i + 1 < args.Length) output = args[++i];
            else if (args[i] == "--loaders") loaders = true;
            else if (args[i] == "--charts") charts = true;
            else if (args[i] == "--soak") soak = true;
            else if (args[i] == "--constrained") constrained = true;
            else if (args[i] == "--responses") responses = true;
            else if (args[i] == "--minutes" && i + 1 < args.Length) minutes = double.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
            else if (args[i] == "--streams" && i + 1 < args.Length) streams = int.Parse(args[++i]);
            else if (args[i] == "--images" && i + 1 < args.Length) images = args[++i];
            else { Console.Error.WriteLine($"unknown argument {args[i]}"); return 2; }
        }
        RecurrentGemma.Model.MemoryTuning.Apply();
        var report = responses ? await ResponsesChain.RunAsync(Console.Error)
            : constrained ? await ConstrainedThroughput.RunAsync(Console.Error)
            : soak ? await Soak.RunAsync(minutes, streams, Console.Error)
            : charts ? Charts.Run(images, Console.Error) : loaders ? LoaderBenchmark.Run(Console.Error) : await HttpBenchmark.RunAsync(tokens, Console.Error);
        Console.WriteLine(report);
        if (output is not null) Cli.Commands.BenchCommand.WriteSection(output, responses ? "responses" : constrained ? "constrained" : soak ? "soak" : charts ? "charts" : loaders ? "loaders" : "http", report);
        return 0;
    }
}
