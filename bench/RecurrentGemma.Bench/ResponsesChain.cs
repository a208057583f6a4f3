using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

using RecurrentGemma.Cli.Bench;

namespace RecurrentGemma.Bench;

/// <summary>
/// A ten-turn conversation through the Responses API, three ways: continued by previous_response_id
/// (the stored state is continued, only the new input is prefilled), run in a conversation
/// (/v1/conversations: the conversation's parked state is continued) and as a stateless client
/// sends it (store: false, the whole history as input every turn, prefilled every time). Time to
/// the first streamed text delta per turn, through a real Kestrel socket.
/// dotnet run -c Release --project bench/RecurrentGemma.Bench -- --responses [--out docs/benchmarks.md]
/// </summary>
public static class ResponsesChain
{
    const int Turns = 10, Chains = 3, OutputTokens = 32;

    static string Question(int chain, int turn) =>
        $"Conversation {chain}, question {turn}: describe in some detail what the harbour looks like at dawn, which boats leave first, and why the gulls follow them out past the breakwater.";

    public static async Task<string> RunAsync(TextWriter progress)
    {
        var dir = Directory.CreateTempSubdirectory("rg-responses-bench-").FullName;
        try
        {
            HttpBenchmark.WriteModel(dir, progress);
            await using var factory = await HttpBenchmark.StartServer(dir, ("Engine:MaxSlots", "16"));
            using var http = factory.CreateClient();
            http.Timeout = TimeSpan.FromMinutes(10);

            await Turn(http, new { input = "warm up", max_output_tokens = 4, temperature = 0, stream = true });
            // ttft[mode][turn] over the chains (0 continued, 1 stateless, 2 conversation);
            // prefilled[mode][turn] = input − cached tokens.
            var ttft = new[] { new List<double>[Turns], new List<double>[Turns], new List<double>[Turns] };
            var prefilled = new[] { new int[Turns], new int[Turns], new int[Turns] };
            for (int m = 0; m < 3; m++) for (int t = 0; t < Turns; t++) ttft[m][t] = [];
            for (int chain = 0; chain < Chains; chain++)
            {
                string? previous = null;
                var history = new List<object>();
                string conversation = await NewConversation(http);
                for (int t = 0; t < Turns; t++)
                {
                    var q = Question(chain, t);
                    var stored = await Turn(http, new { input = q, previous_response_id = previous, max_output_tokens = OutputTokens, temperature = 0, stream = true });
                    previous = stored.Id;
                    ttft[0][t].Add(stored.Ttft);
                    prefilled[0][t] = stored.Input - stored.Cached;

                    history.Add(new { role = "user", content = q });
                    var stateless = await Turn(http, new { input = history, store = false, max_output_tokens = OutputTokens, temperature = 0, stream = true });
                    history.Add(new { role = "assistant", content = stateless.Text });
                    ttft[1][t].Add(stateless.Ttft);
                    prefilled[1][t] = stateless.Input - stateless.Cached;

                    var inConversation = await Turn(http, new { input = q, conversation, max_output_tokens = OutputTokens, temperature = 0, stream = true });
                    ttft[2][t].Add(inConversation.Ttft);
                    prefilled[2][t] = inConversation.Input - inConversation.Cached;
                }
                progress.WriteLine($"[bench] chain {chain}: turn 10 TTFT {ttft[0][Turns - 1][^1] * 1000:F0} ms continued, {ttft[2][Turns - 1][^1] * 1000:F0} ms in a conversation, {ttft[1][Turns - 1][^1] * 1000:F0} ms stateless");
            }

            var ci = CultureInfo.InvariantCulture;
            static double Median(List<double> xs) => Spread.Of(xs).Median;
            var sb = new StringBuilder();
            sb.AppendLine("## Responses API (issue #13): a ten-turn conversation continued by previous_response_id or in a conversation vs a stateless client");
            sb.AppendLine();
            sb.AppendLine("Command: `dotnet run -c Release --project bench/RecurrentGemma.Bench -- --responses --out docs/benchmarks.md`  ");
            sb.AppendLine(ci, $"Model: random weights, hidden 1024, 12 layers, bf16 ({HttpBenchmark.ModelShape.ParameterCount / 1e6:F0}M parameters), demo tokenizer; each turn a ~40-word question, up to {OutputTokens} output tokens, greedy, streamed; real Kestrel socket on 127.0.0.1. Continued: `previous_response_id` (stored state, only the new input prefilled). Conversation: `conversation` (/v1/conversations; its parked state continued). Stateless: `store: false` with the whole history as `input` each turn (every turn prefilled from the start, as a server without stored states must). Time to the first `response.output_text.delta`, median of {Chains} conversations (range); {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}.");
            sb.AppendLine();
            sb.AppendLine("| turn | continued: TTFT | continued: ids prefilled | conversation: TTFT | conversation: ids prefilled | stateless: TTFT | stateless: ids prefilled | speed-up (continued, conversation) |");
            sb.AppendLine("|---|---|---|---|---|---|---|---|");
            string Cell(int m, int t) => $"{Median(ttft[m][t]) * 1000:F0} ms ({ttft[m][t].Min() * 1000:F0}–{ttft[m][t].Max() * 1000:F0})";
            foreach (int t in new[] { 0, 1, 4, 9 })
            {
                double a = Median(ttft[0][t]), b = Median(ttft[1][t]), c = Median(ttft[2][t]);
                sb.AppendLine(ci, $"| {t + 1} | {Cell(0, t)} | {prefilled[0][t]} | {Cell(2, t)} | {prefilled[2][t]} | {Cell(1, t)} | {prefilled[1][t]} | {b / a:F1}×, {b / c:F1}× |");
            }
            sb.AppendLine();
            sb.AppendLine("A continued turn and a turn in a conversation prefill only their own question (the same number of ids at turn 10 as at turn 2); the stateless turn prefills the whole conversation, which grows every turn.");
            return sb.ToString();
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    static async Task<string> NewConversation(HttpClient http)
    {
        using var response = await http.PostAsync("/v1/conversations", new StringContent("{}", Encoding.UTF8, "application/json"));
        response.EnsureSuccessStatusCode();
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return doc.RootElement.GetProperty("id").GetString()!;
    }

    sealed record TurnResult(string Id, string Text, double Ttft, int Input, int Cached);

    static async Task<TurnResult> Turn(HttpClient http, object body)
    {
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/responses")
        {
            Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double first = -1;
        for (string? line; (line = await reader.ReadLineAsync()) is not null;)
        {
            if (!line.StartsWith("data: {")) continue;
            using var doc = JsonDocument.Parse(line[6..]);
            var type = doc.RootElement.GetProperty("type").GetString();
            if (type == "response.output_text.delta" && first < 0) first = clock.Elapsed.TotalSeconds;
            if (type is "response.completed" or "response.incomplete")
            {
                var r = doc.RootElement.GetProperty("response");
                var usage = r.GetProperty("usage");
                if (first < 0) first = clock.Elapsed.TotalSeconds;   // an empty answer: its end is its first output
                return new TurnResult(r.GetProperty("id").GetString()!, r.GetProperty("output_text").GetString()!, first,
                    usage.GetProperty("input_tokens").GetInt32(), usage.GetProperty("input_tokens_details").GetProperty("cached_tokens").GetInt32());
            }
        }
        throw new InvalidOperationException("the stream ended without response.completed");
    }
}
