System.Console.WriteLine(RecurrentGemma.Model.Probe.V());
