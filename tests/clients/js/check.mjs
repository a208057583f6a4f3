// node check.mjs <base-url>: the official OpenAI JS client, unchanged, against the server.
// Prints one line per check and exits non-zero on the first failure.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2] + "/v1", apiKey: "unused", maxRetries: 0 });
const ok = (cond, what) => { if (!cond) { console.log(`FAIL ${what}`); process.exit(1); } console.log(`ok ${what}`); };

const models = await client.models.list();
ok(models.data.some((m) => m.id === "recurrentgemma-demo"), "models.list");

const chat = await client.chat.completions.create({
  model: "recurrentgemma-demo", messages: [{ role: "user", content: "Hello!" }], max_tokens: 5, seed: 4,
  logit_bias: { 1: -100, 107: -100 },
});
ok(chat.choices[0].message.role === "assistant" && chat.usage.completion_tokens === 5, "chat.completions.create");

let streamed = "", sawUsage = false, finish = null;
const stream = await client.chat.completions.create({
  model: "recurrentgemma-demo", messages: [{ role: "user", content: "Hello!" }], max_tokens: 5, seed: 4, stream: true,
  stream_options: { include_usage: true }, logit_bias: { 1: -100, 107: -100 },
});
for await (const chunk of stream) {
  if (chunk.usage) sawUsage = true;
  if (chunk.choices.length) { streamed += chunk.choices[0].delta.content ?? ""; finish = chunk.choices[0].finish_reason ?? finish; }
}
ok(sawUsage && finish === "length" && streamed === chat.choices[0].message.content, "chat.completions.create stream (same text as non-stream)");

const completion = await client.completions.create({ model: "recurrentgemma-demo", prompt: "Once upon a time", max_tokens: 4, logit_bias: { 1: -100, 107: -100 } });
ok(completion.choices[0].text.length > 0 && completion.usage.completion_tokens === 4, "completions.create");

try {
  await client.chat.completions.create({ model: "recurrentgemma-demo", messages: [{ role: "user", content: "hi" }], temperature: 5 });
  ok(false, "a bad request throws");
} catch (e) {
  ok(e.status === 400 && e.error?.param === "temperature", "BadRequestError carries status 400 and param");
}
