using RecurrentGemma.Engine;
using RecurrentGemma.Model;

namespace RecurrentGemma.Server.Hosting;

/// <summary>Starts the engine over a loaded model (a seam: tests start a scripted one).</summary>
public interface IEngineFactory
{
    IEngineClient Create(GriffinForCausalLM model, EngineOptions options, EngineMetrics metrics);
}

public sealed class EngineFactory : IEngineFactory
{
    public IEngineClient Create(GriffinForCausalLM model, EngineOptions options, EngineMetrics metrics) => new EngineClient(model, options, metrics);
}
