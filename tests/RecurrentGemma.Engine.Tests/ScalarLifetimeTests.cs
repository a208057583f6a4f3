using System.Reflection;
using System.Reflection.Emit;
using RecurrentGemma.Model;
using TorchSharp;

namespace RecurrentGemma.Engine.Tests;

/// <summary>
/// No code of the model or the engine lets TorchSharp make a temporary Scalar. Such a Scalar
/// has a finalizer and nothing holds it during the native call, so a garbage collection at that
/// moment frees it while libtorch reads it (see <see cref="Scalars"/>). Found by reading IL: a
/// call into TorchSharp is refused when that method — or one it calls, three levels deep —
/// converts a number to a Scalar (e.g. <c>x.add_(y)</c>, which passes an implicit alpha of 1,
/// or <c>t * 0.5</c>).
/// </summary>
public class ScalarLifetimeTests
{
    static readonly Dictionary<MethodBase, bool> Memo = new();
    static readonly OpCode[] OneByte = typeof(OpCodes).GetFields().Select(f => (OpCode)f.GetValue(null)!).Where(o => o.Size == 1).ToArray();
    static readonly OpCode[] TwoByte = typeof(OpCodes).GetFields().Select(f => (OpCode)f.GetValue(null)!).Where(o => o.Size == 2).ToArray();

    /// <summary>Methods called by a method body (call, callvirt, newobj, ldftn).</summary>
    static IEnumerable<MethodBase> Callees(MethodBase method)
    {
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); } catch (Exception) { yield break; }
        if (il is null) yield break;
        for (int i = 0; i < il.Length;)
        {
            OpCode op = il[i] == 0xFE ? TwoByte.First(o => (o.Value & 0xFF) == il[i + 1]) : OneByte.First(o => (ushort)o.Value == il[i]);
            i += op.Size;
            int operand = op.OperandType switch
            {
                OperandType.InlineNone => 0, OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2, OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType == OperandType.InlineMethod)
            {
                MethodBase? callee = null;
                try { callee = method.Module.ResolveMethod(BitConverter.ToInt32(il, i), method.DeclaringType?.GetGenericArguments(), method.IsGenericMethod ? method.GetGenericArguments() : null); }
                catch (Exception) { }
                if (callee is not null) yield return callee;
            }
            i += operand;
        }
    }

    static bool MakesTemporaryScalar(MethodBase method, int depth)
    {
        if (method.DeclaringType == typeof(Scalar) && method.Name == "op_Implicit") return true;
        if (method.DeclaringType?.Assembly != typeof(Scalar).Assembly || depth == 0) return false;
        if (Memo.TryGetValue(method, out var known)) return known;
        Memo[method] = false;   // cycles
        bool result = Callees(method).Any(c => MakesTemporaryScalar(c, depth - 1));
        Memo[method] = result;
        return result;
    }

    [Fact]
    public void Model_and_engine_code_never_makes_a_temporary_scalar()
    {
        var offenders = new List<string>();
        foreach (var assembly in new[] { typeof(GriffinForCausalLM).Assembly, typeof(EngineClient).Assembly })
            foreach (var type in assembly.GetTypes())
            {
                if (type == typeof(Scalars)) continue;
                const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
                foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
                    foreach (var callee in Callees(method).Distinct())
                        if (MakesTemporaryScalar(callee, 3))
                            offenders.Add($"{type.FullName}.{method.Name} → {callee.DeclaringType?.Name}.{callee.Name}({string.Join(", ", callee.GetParameters().Select(p => p.ParameterType.Name))})");
            }
        Assert.True(offenders.Count == 0, "temporary Scalars:\n" + string.Join("\n", offenders.Distinct().Order()));
    }
}
