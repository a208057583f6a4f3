using Microsoft.Extensions.Configuration;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// A wrong setting stops the server at start with a line naming it (exit code 2), instead of a
/// process that stays up while its model load fails in the background, or a setting ignored.
/// </summary>
public class ConfigurationCheckTests
{
    static IReadOnlyList<string> Problems(params (string Key, string? Value)[] settings) => Problems(null, settings);

    static IReadOnlyList<string> Problems(string? overlay, params (string Key, string? Value)[] settings)
    {
        var builder = new ConfigurationBuilder().AddJsonFile(Path.Combine(ServerFactory.RepoRoot, "appsettings.json"));
        if (overlay is not null) builder.AddJsonFile(Path.Combine(ServerFactory.RepoRoot, overlay));
        var config = builder.AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build();
        return ConfigurationCheck.Problems(config);
    }

    [Fact]
    public void The_kubernetes_settings_file_passes()
    {
        // The pods read it over appsettings.json (ASPNETCORE_ENVIRONMENT=Kubernetes): a problem in
        // it would stop every pod at start.
        Assert.Empty(Problems("deploy/kubernetes/base/appsettings.Kubernetes.json"));
    }

    [Fact]
    public void The_shipped_appsettings_and_the_deployments_settings_pass()
    {
        Assert.Empty(Problems());
        Assert.Empty(Problems(("Model:DType", "bfloat16"), ("Model:Device", "cuda:1"), ("Sessions:Store", "Redis"), ("Sessions:Redis", "redis:6379"),
            ("Sessions:EncryptionKey", Convert.ToBase64String(new byte[32])), ("Sessions:TimeToLive", "7.00:00:00"), ("Sessions:MaxParkedPerOwner", "0"),
            ("Api:TrustedProxies:0", "10.0.0.0/8"), ("Api:TrustedProxies:1", "::1"), ("Auth:ApiKeys:0", "k"), ("Cors:Origins:0", "https://a.example"),
            ("Logs:Format", "JSON"), ("Engine:StateMemoryMiB", "1024"), ("Engine:MaxRunningSequences", "32"), ("Ui:Enabled", "false"), ("Responses:MaxStored", "5")));
    }

    [Theory]
    [InlineData("Engine:MaxSlots", "-1", "Engine:MaxSlots must be positive")]
    [InlineData("Engine:MaxSlots", "abc", "'abc' at 'Engine:MaxSlots'")]
    [InlineData("Engine:PrefillTokenBudget", "0", "Engine:PrefillTokenBudget must be positive")]
    [InlineData("Engine:MaxRunningSequences", "0", "Engine:MaxRunningSequences must be positive")]
    [InlineData("Engine:DeviceMemoryFraction", "1.5", "Engine:DeviceMemoryFraction")]
    [InlineData("Engine:PrefillTokenBuget", "256", "Engine:PrefillTokenBuget is not a setting of this server (did you mean Engine:PrefillTokenBudget?)")]
    [InlineData("Model:DType", "fp8", "Model:DType 'fp8'")]
    [InlineData("Model:Device", "tpu", "Model:Device 'tpu'")]
    [InlineData("Model:Pth", "/models/2b", "Model:Pth is not a setting of this server (did you mean Model:Path?)")]
    [InlineData("Sessions:Store", "mongo", "Sessions:Store 'mongo'")]
    [InlineData("Sessions:EncryptionKey", "c2hvcnQ=", "Sessions:EncryptionKey must be base64 of 32")]
    [InlineData("Sessions:TimeToLive", "-1.00:00:00", "Sessions:TimeToLive must be positive")]
    [InlineData("Sessions:HostMemoryMiB", "-5", "Sessions:HostMemoryMiB")]
    [InlineData("Api:KeepAliveSeconds", "0", "Api:KeepAliveSeconds must be positive")]
    [InlineData("Api:TrustedProxies:0", "10.0.0.0/99", "Api:TrustedProxies: '10.0.0.0/99'")]
    [InlineData("Api:LogTxt", "true", "Api:LogTxt is not a setting of this server (did you mean Api:LogText?)")]
    [InlineData("Logs:Format", "xml", "Logs:Format 'xml'")]
    [InlineData("Responses:MaxStored", "0", "Responses:MaxStored must be positive")]
    public void A_wrong_setting_is_named(string key, string value, string expected)
    {
        var problems = Problems((key, value));
        Assert.Contains(problems, p => p.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Every_setting_the_deployment_files_and_docs_name_is_a_setting_of_this_server()
    {
        // Settings as environment names (Sessions__TimeToLive, Auth__ApiKeys__0) or keys
        // (Engine:MaxSlots) in the compose file, the manifests and the docs: a misspelt one would be
        // refused at start, and a reader copying it from the docs would be stopped.
        var pattern = new System.Text.RegularExpressions.Regex(@"\b(?:RG_)?((?:Model|Engine|Sessions|Api|Responses|Ui|Auth|Cors|Logs)(?:(?:__|:)[A-Z][A-Za-z0-9]*)+)");
        var files = Directory.EnumerateFiles(Path.Combine(ServerFactory.RepoRoot, "deploy"), "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains("node_modules") && (f.EndsWith(".yaml") || f.EndsWith(".yml") || f.EndsWith(".md")))
            .Concat(new[] { "docker-compose.yml", "README.md", "Dockerfile" }.Select(f => Path.Combine(ServerFactory.RepoRoot, f)))
            .Concat(Directory.EnumerateFiles(Path.Combine(ServerFactory.RepoRoot, "docs"), "*.md"));
        var keys = files.SelectMany(f => pattern.Matches(File.ReadAllText(f)).Select(m => m.Groups[1].Value.Replace("__", ":"))).Distinct().ToList();
        Assert.Contains("Sessions:Store", keys);   // the scan finds them
        var unknown = keys.SelectMany(k => Problems((k, "1")).Where(p => p.Contains("is not a setting", StringComparison.Ordinal))).ToList();
        Assert.True(unknown.Count == 0, string.Join("\n", unknown));
    }

    [Fact]
    public void Redis_without_a_connection_string_is_named()
    {
        Assert.Contains(Problems(("Sessions:Store", "redis")), p => p.Contains("Sessions:Redis", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_server_process_exits_at_once_with_code_2_and_every_problem_on_a_line()
    {
        var (code, output) = await ServerProcess.RunToExitAsync("--Sessions:Store=mongo --Engine:MaxSlots=-1");
        Assert.True(code == 2, output);
        Assert.Contains("Configuration error: Sessions:Store 'mongo' is not disk or redis", output);
        Assert.Contains("Configuration error: Engine:MaxSlots must be positive", output);
        Assert.DoesNotContain("   at ", output);   // no stack trace
    }
}
