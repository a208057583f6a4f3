using RecurrentGemma.Server.Hosting;

// RecurrentGemma.Server: an OpenAI-compatible server for RecurrentGemma.
// Request path: OpenAi/*Endpoint → RequestValidation → InferenceService (template, tokens)
//   → EngineClient → EngineLoop (continuous batching on the model) → events back the same way.
RecurrentGemma.Model.MemoryTuning.UseOneArena(typeof(Program).Assembly);   // first: may re-run the program with one malloc arena (Model/MemoryTuning.cs)
RecurrentGemma.Model.MemoryTuning.Apply();   // before libtorch allocates: reuse pages (Model/MemoryTuning.cs)
RecurrentGemma.Model.OpenMpTuning.Apply();   // before libtorch loads: its threads must not hold the cores (Model/OpenMpTuning.cs)
var builder = WebApplication.CreateBuilder(args);

// One configuration file, appsettings.json at the repository root (copied next to the binary);
// environment variables (RG_Model__Path or Model__Path) and the command line override it.
builder.Configuration.AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true);
builder.Configuration.AddEnvironmentVariables();
builder.Configuration.AddEnvironmentVariables("RG_");
builder.Configuration.AddCommandLine(args);

// A wrong setting ends the process here, each named on one line (Hosting/ConfigurationCheck.cs).
if (ConfigurationCheck.Problems(builder.Configuration) is { Count: > 0 } problems)
{
    foreach (var problem in problems) Console.Error.WriteLine($"Configuration error: {problem}");
    return 2;
}

builder.Logging.ClearProviders();   // Serilog writes the logs (Hosting/Telemetry.cs)
builder.Services.AddRecurrentGemma(builder.Configuration);

var app = builder.Build();
app.UseRecurrentGemma();
app.Run();
return 0;

/// <summary>Entry point type, public for WebApplicationFactory in the tests.</summary>
public partial class Program;
