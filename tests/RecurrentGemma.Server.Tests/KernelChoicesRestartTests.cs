using System.Text.Json;
using System.Text.Json.Nodes;
using RecurrentGemma.Server.Hosting;

namespace RecurrentGemma.Server.Tests;

/// <summary>
/// A restarted server takes the CPU kernels its predecessor timed (Model:KernelChoices), so the
/// same seed meets the same kernels and gives the same text: the first process writes the file,
/// the second reads it — shown by editing one decision in between and finding the edit in the
/// second process's start-up log. The engine's decode thread plan is kept the same way.
/// </summary>
public class KernelChoicesRestartTests
{
    [Fact]
    public async Task A_restart_takes_the_kernel_choices_from_the_file()
    {
        if (!OperatingSystem.IsLinux() || !RecurrentGemma.Model.Modules.SimdGemv.Supported) return;
        var root = Path.Combine(Path.GetTempPath(), "rg-kc-" + Guid.NewGuid().ToString("N")[..8]);
        var dir = Path.Combine(root, "wide-head");
        var choices = Path.Combine(root, "cache", "kernel-choices.json");
        try
        {
            // A vocabulary of 8192 × 128: the head is large enough (2^20 weights) for the kernels and their timing.
            ModelDirectory.Write(dir, vocab: 8192);
            string args = $"--Model:Path={dir} --Model:KernelChoices={choices} --Engine:MaxSlots=4 --Api:ShutdownGraceSeconds=1";

            await using (var first = await ServerProcess.StartAsync(args, readySeconds: 120))
            {
                Assert.True(first.Log.Contains("none yet in"), first.Log);
                // Decode steps take the one-row decisions (the start-up calibration usually has already).
                var r = await first.Http.PostAsync("/v1/completions", Json("""{"prompt":"hello","max_tokens":3,"temperature":0}"""));
                Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync());
            }
            var file = JsonNode.Parse(File.ReadAllText(choices))!.AsObject();
            // Timed at start-up (the engine's thread calibration runs batch-1 steps): the one-row f32 loop.
            Assert.True(file["choices"]!.AsObject().ContainsKey("f32-row-by-row/x1"), file.ToJsonString());
            var oneRow = file["choices"]!["f32-row-by-row/x1"]!.AsObject();
            bool timedOn = (double)oneRow["value"]! != 0;

            // The opposite decision, with timings no machine would measure: the next process must take it.
            oneRow["value"] = timedOn ? 0 : 1;
            oneRow["timings"] = new JsonArray(111.11, 222.22);
            // The engine's decode thread plan (timed at start-up, rewritten at shutdown with what the
            // engine learned): times no machine would measure, one side winning each size in turn.
            var threadPlan = file["choices"]!.AsObject().Where(c => c.Key.StartsWith("decode-threads/", StringComparison.Ordinal)).ToList();
            bool calibrated = Environment.ProcessorCount > 1;   // one core: nothing to calibrate
            Assert.Equal(calibrated ? 1 : 0, threadPlan.Count);
            if (calibrated)
            {
                Assert.EndsWith("/b4", threadPlan[0].Key);   // the engine's 4 slots bound the sizes timed
                Assert.StartsWith("learned while running", (string?)threadPlan[0].Value!["summary"]);
                file["choices"]![threadPlan[0].Key] = new JsonObject { ["value"] = 3, ["timings"] = new JsonArray(1, 0.5, 8.5, 2, 9.25, 0.75, 4, 0.25, 16) };
            }
            File.WriteAllText(choices, file.ToJsonString());

            await using var second = await ServerProcess.StartAsync(args, readySeconds: 120);
            // The kernels' lines are logged just after the server turns ready: wait for the last of them (bounded).
            for (int i = 0; i < 200 && !second.Log.Contains("CPU kernel choices: kept in"); i++) await Task.Delay(50);
            Assert.Matches("CPU kernel choices: \"?[0-9]+ read from", second.Log);
            Assert.True(second.Log.Contains($"f32×1 loop {(timedOn ? "four rows per pass" : "row by row")} (row by row 222.22 vs four rows per pass 111.11 ms)"), second.Log);
            if (calibrated)
                Assert.Matches("Engine threads: \"?decode: one thread at batch 1/4 \\(kept by an earlier process, not timed: 1 vs [0-9]+ threads: b1 0.50/8.50 ms, b2 9.25/0.75 ms, b4 0.25/16.00 ms\\)", second.Log);
            var response = await second.Http.PostAsync("/v1/completions", Json("""{"prompt":"hello","max_tokens":4,"temperature":1,"seed":7}"""));
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        }
        finally { Directory.Delete(root, recursive: true); }
    }
    [Theory]
    [InlineData("off", null, null)]
    [InlineData("", null, null)]
    [InlineData("/data/choices.json", null, "/data/choices.json")]
    [InlineData("auto", "/xdg-cache", "/xdg-cache/rgemma/kernel-choices.json")]
    public void The_setting_names_the_file(string setting, string? xdgCache, string? expected)
    {
        var before = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        try
        {
            Environment.SetEnvironmentVariable("XDG_CACHE_HOME", xdgCache);
            Assert.Equal(expected, ModelHost.KernelChoicesPath(setting));
        }
        finally { Environment.SetEnvironmentVariable("XDG_CACHE_HOME", before); }
    }

    [Fact]
    public void Auto_without_XDG_CACHE_HOME_is_the_home_cache()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 }) return;
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        Assert.Equal(Path.Combine(home, ".cache", "rgemma", "kernel-choices.json"), ModelHost.KernelChoicesPath("auto"));
    }

    static StringContent Json(string body) => new(body, System.Text.Encoding.UTF8, "application/json");
}
