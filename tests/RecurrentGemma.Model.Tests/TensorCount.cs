namespace RecurrentGemma.Model.Tests;

/// <summary>Tensor handles TorchSharp has created so far: a path is told apart by the tensors it makes.</summary>
static class TensorCount
{
    public static long Created => TorchSharp.DisposeScopeManager.Statistics.CreatedInScopeCount + TorchSharp.DisposeScopeManager.Statistics.CreatedOutsideScopeCount;
}
