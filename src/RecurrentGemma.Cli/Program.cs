using RecurrentGemma.Cli;

RecurrentGemma.Model.MemoryTuning.UseOneArena(typeof(Program).Assembly);   // first: may re-run the program with one malloc arena (Model/MemoryTuning.cs)
RecurrentGemma.Model.MemoryTuning.Apply();   // before libtorch allocates: reuse pages (Model/MemoryTuning.cs)
RecurrentGemma.Model.OpenMpTuning.Apply();   // before libtorch loads: its threads must not hold the cores (Model/OpenMpTuning.cs)
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
return await CliApp.RunAsync(args, Console.In, Console.Out, Console.Error, cancel.Token);
