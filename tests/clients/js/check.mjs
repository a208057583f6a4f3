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

// best_of: three candidates made, the best one returned, all three counted.
const best = await client.completions.create({ model: "recurrentgemma-demo", prompt: "Once upon a time", max_tokens: 4, best_of: 3, temperature: 1, seed: 3, logit_bias: { 1: -100, 107: -100 } });
ok(best.choices.length === 1 && best.choices[0].index === 0 && best.usage.completion_tokens === 12 && best.choices[0].logprobs === null, "completions.create best_of");

// Token ids as the prompt (the client's number[] and number[][] forms): the ids /tokenize gives
// for a text complete exactly as the text does.
const ids = await (await fetch(process.argv[2] + "/tokenize", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ prompt: "Once upon a time" }) })).json();
const byText = await client.completions.create({ model: "recurrentgemma-demo", prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
const byIds = await client.completions.create({ model: "recurrentgemma-demo", prompt: ids.tokens, max_tokens: 4, temperature: 0 });
const byIdLists = await client.completions.create({ model: "recurrentgemma-demo", prompt: [ids.tokens, ids.tokens], max_tokens: 4, temperature: 0 });
ok(byIds.choices[0].text === byText.choices[0].text && byIdLists.choices.length === 2 && byIdLists.choices[1].text === byText.choices[0].text
  && byIds.usage.prompt_tokens === ids.count, "completions.create with token ids");

// Echo with logprobs scores the prompt (max_tokens 0), as evaluation harnesses ask through this client.
const scored = await client.completions.create({ model: "recurrentgemma-demo", prompt: ids.tokens, max_tokens: 0, echo: true, logprobs: 1 });
const lp = scored.choices[0].logprobs;
ok(lp.tokens.length === ids.count && lp.token_logprobs[0] === null && lp.token_logprobs.slice(1).every((x) => x <= 0)
  && scored.choices[0].text === "Once upon a time", "completions.create echo + logprobs scores the prompt");

try {
  await client.chat.completions.create({ model: "recurrentgemma-demo", messages: [{ role: "user", content: "hi" }], temperature: 5 });
  ok(false, "a bad request throws");
} catch (e) {
  ok(e.status === 400 && e.error?.param === "temperature", "BadRequestError carries status 400 and param");
}

// Structured output: a Zod schema through the client's own helper, parsed back into an object.
const { zodResponseFormat } = await import("openai/helpers/zod");
const { z } = await import("zod");
const City = z.object({ city: z.string().max(12), population: z.number().int().min(0).max(100000000), capital: z.boolean(), tags: z.array(z.enum(["old", "new", "big"])).max(3) });
const parsed = await client.chat.completions.parse({
  model: "recurrentgemma-demo", messages: [{ role: "user", content: "Describe a city." }], max_tokens: 300, seed: 6, temperature: 1,
  response_format: zodResponseFormat(City, "city"),
});
const value = parsed.choices[0].message.parsed;
ok(parsed.choices[0].finish_reason === "stop" && City.safeParse(value).success, "chat.completions.parse with zodResponseFormat");

// Zod's url, positive and bounded numbers become format uri, exclusiveMinimum and minimum/maximum: kept in strict mode.
const Link = z.object({ url: z.string().url(), score: z.number().min(0).max(1), price: z.number().positive() });
const link = await client.chat.completions.parse({
  model: "recurrentgemma-demo", messages: [{ role: "user", content: "A link." }], max_tokens: 300, seed: 8, temperature: 1,
  response_format: zodResponseFormat(Link, "link"),
});
ok(link.choices[0].finish_reason === "stop" && Link.safeParse(link.choices[0].message.parsed).success, "zodResponseFormat with url, bounded and positive numbers");

// vLLM's guided_choice, sent through the client as an extra body field (as vLLM's docs show).
const picked = await client.chat.completions.create({ model: "recurrentgemma-demo", messages: [{ role: "user", content: "Pick." }], n: 3, temperature: 1.5, seed: 5,
  guided_choice: ["positive", "negative", "neutral"] });
ok(picked.choices.every((c) => ["positive", "negative", "neutral"].includes(c.message.content)), "guided_choice through the client");

// Tools: a required call, the result sent back, the answer continues the parked state.
const tools = [{ type: "function", function: { name: "get_weather", description: "Weather in a city", strict: true,
  parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"], additionalProperties: false } } }];
const messages = [{ role: "user", content: "Weather in Rome?" }];
const called = await client.chat.completions.create({ model: "recurrentgemma-demo", messages, tools, tool_choice: "required", max_tokens: 200, seed: 2 });
const call = called.choices[0].message.tool_calls?.[0];
ok(called.choices[0].finish_reason === "tool_calls" && call?.function.name === "get_weather" && typeof JSON.parse(call.function.arguments).city === "string", "tool call (required)");
messages.push(called.choices[0].message);
for (const c of called.choices[0].message.tool_calls) messages.push({ role: "tool", tool_call_id: c.id, content: "{\"temp\":25}" });
const answered = await client.chat.completions.create({ model: "recurrentgemma-demo", messages, tools, max_tokens: 8, seed: 3 });
ok(answered.usage.prompt_tokens_details.cached_tokens > called.usage.prompt_tokens, "tool round trip continues the parked state");

// Streamed tool calls: deltas carry the id and name once, then the arguments in pieces.
const toolStream = await client.chat.completions.create({ model: "recurrentgemma-demo", messages: [{ role: "user", content: "Weather in Rome?" }], tools, tool_choice: "required", max_tokens: 200, seed: 2, stream: true });
const acc = {}; let streamFinish = null;
for await (const chunk of toolStream) {
  const choice = chunk.choices[0]; if (!choice) continue;
  streamFinish = choice.finish_reason ?? streamFinish;
  for (const d of choice.delta.tool_calls ?? []) {
    acc[d.index] ??= { id: null, name: null, args: "" };
    if (d.id) acc[d.index].id = d.id;
    if (d.function?.name) acc[d.index].name = d.function.name;
    acc[d.index].args += d.function?.arguments ?? "";
  }
}
ok(streamFinish === "tool_calls" && acc[0]?.name === "get_weather" && acc[0].args === call.function.arguments, "streamed tool calls (same call as non-stream)");

// The Responses API: create, a continuation by previous_response_id, a helper stream with its
// final response, retrieve, input items (auto-paginated), delete, then 404 for the deleted id.
const first = await client.responses.create({ model: "recurrentgemma-demo", input: "Hello!", instructions: "Be brief.", max_output_tokens: 6, seed: 4 });
ok(first.object === "response" && first.id.startsWith("resp_") && first.output_text.length > 0 && first.usage.output_tokens === 6
  && first.status === "incomplete" && first.incomplete_details.reason === "max_output_tokens", "responses.create");
const second = await client.responses.create({ model: "recurrentgemma-demo", input: [{ role: "user", content: "And then?" }], instructions: "Be brief.",
  previous_response_id: first.id, max_output_tokens: 6, seed: 4 });
ok(second.previous_response_id === first.id && second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens + first.usage.output_tokens - 1,
  "responses.create with previous_response_id continues the stored state");
const rs = client.responses.stream({ model: "recurrentgemma-demo", input: [{ role: "user", content: "And then?" }], instructions: "Be brief.",
  previous_response_id: first.id, max_output_tokens: 6, seed: 4 });
let deltas = "", sequence = [];
rs.on("response.output_text.delta", (e) => { deltas += e.delta; });
rs.on("event", (e) => sequence.push(e.sequence_number));
const streamedResponse = await rs.finalResponse();
ok(deltas === second.output_text && streamedResponse.output_text === second.output_text && sequence.every((n, i) => n === i),
  "responses.stream (same text as non-stream, events numbered in order)");
const retrieved = await client.responses.retrieve(second.id);
ok(retrieved.id === second.id && retrieved.output_text === second.output_text, "responses.retrieve");
const items = [];
for await (const item of client.responses.inputItems.list(second.id, { limit: 1 })) items.push(item);
ok(items.length === 3 && items[0].type === "message" && items[0].role === "user" && items[2].content[0].text === "Hello!", "responses.inputItems.list (paginated, newest first)");
await client.responses.delete(second.id);
try {
  await client.responses.retrieve(second.id);
  ok(false, "a deleted response is gone");
} catch (e) {
  ok(e.status === 404, "responses.delete, then retrieve is a 404");
}
try {
  await client.responses.create({ model: "recurrentgemma-demo", input: "x", previous_response_id: second.id });
  ok(false, "continuing a deleted response fails");
} catch (e) {
  ok(e.status === 404 && e.error?.param === "previous_response_id", "continuing a deleted response: 404 naming previous_response_id");
}

// The Conversations API: create with items and metadata, two responses in it (the second
// continuing the conversation's parked state), its items auto-paginated, one item read and
// deleted, the metadata updated, the conversation deleted, then 404s.
const conv = await client.conversations.create({ metadata: { topic: "weather" }, items: [{ type: "message", role: "user", content: "Let us talk about the weather." }] });
ok(conv.object === "conversation" && conv.id.startsWith("conv_") && conv.metadata.topic === "weather", "conversations.create");
const counted = await client.responses.inputTokens.count({ model: "recurrentgemma-demo", input: "Is it sunny?", conversation: conv.id });
const c1 = await client.responses.create({ model: "recurrentgemma-demo", input: "Is it sunny?", conversation: conv.id, max_output_tokens: 6, seed: 4 });
ok(counted.object === "response.input_tokens" && counted.input_tokens === c1.usage.input_tokens, "responses.inputTokens.count equals the response's input tokens");
const c2 = await client.responses.create({ model: "recurrentgemma-demo", input: "And tomorrow?", conversation: { id: conv.id }, max_output_tokens: 6, seed: 4 });
ok(c1.conversation?.id === conv.id && c2.usage.input_tokens_details.cached_tokens === c1.usage.input_tokens + c1.usage.output_tokens - 1,
  "responses.create with conversation continues the conversation's state");
const convItems = [];
for await (const item of client.conversations.items.list(conv.id, { limit: 2, order: "asc" })) convItems.push(item);
ok(convItems.length === 5 && convItems[0].content[0].text === "Let us talk about the weather." && convItems[4].content[0].text === c2.output_text,
  "conversations.items.list (paginated, oldest first)");
const addedItems = await client.conversations.items.create(conv.id, { items: [{ type: "message", role: "user", content: "A note." }] });
const note = await client.conversations.items.retrieve(addedItems.data[0].id, { conversation_id: conv.id });
ok(note.content[0].text === "A note.", "conversations.items.create and retrieve");
const afterDelete = await client.conversations.items.delete(note.id, { conversation_id: conv.id });
ok(afterDelete.id === conv.id, "conversations.items.delete returns the conversation");
const updatedConv = await client.conversations.update(conv.id, { metadata: { topic: "climate" } });
ok(updatedConv.metadata.topic === "climate" && (await client.conversations.retrieve(conv.id)).metadata.topic === "climate", "conversations.update and retrieve");
const deletedConv = await client.conversations.delete(conv.id);
ok(deletedConv.deleted === true && deletedConv.id === conv.id, "conversations.delete");
try {
  await client.responses.create({ model: "recurrentgemma-demo", input: "x", conversation: conv.id });
  ok(false, "a response in a deleted conversation fails");
} catch (e) {
  ok(e.status === 404 && e.error?.param === "conversation", "a response in a deleted conversation: 404 naming conversation");
}

// Background responses: queued, polled with retrieve, resumed as a stream from a sequence number,
// and a long one cancelled.
const bg = await client.responses.create({ model: "recurrentgemma-demo", input: "Name a river.", background: true, max_output_tokens: 8, temperature: 0 });
ok(bg.status === "queued" && bg.background === true, "responses.create with background: true is queued");
let polled = bg;
for (let i = 0; i < 200 && (polled.status === "queued" || polled.status === "in_progress"); i++) {
  await new Promise((r) => setTimeout(r, 50));
  polled = await client.responses.retrieve(bg.id);
}
ok(polled.status === "incomplete" && polled.usage.output_tokens === 8, "responses.retrieve polls a background response to its end");
const resumed = await client.responses.retrieve(bg.id, { stream: true, starting_after: 2 });
const seen = [];
for await (const event of resumed) seen.push(event);
ok(seen.length > 0 && seen[0].sequence_number === 3 && seen.at(-1).type === "response.incomplete"
  && seen.filter((e) => e.type === "response.output_text.delta").map((e) => e.delta).join("") === polled.output_text,
  "responses.retrieve with stream and starting_after resumes the events");
const longBg = await client.responses.create({ model: "recurrentgemma-demo", input: "Go on", background: true, max_output_tokens: 4000, temperature: 0,
  text: { format: { type: "json_schema", name: "long", strict: true,
    schema: { type: "object", properties: { s: { type: "array", minItems: 3, items: { type: "string", minLength: 1000 } } }, required: ["s"], additionalProperties: false } } } });
const cancelledBg = await client.responses.cancel(longBg.id);
ok(cancelledBg.status === "cancelled" && (await client.responses.retrieve(longBg.id)).status === "cancelled", "responses.cancel stops a background response");

// Stored chat completions: store: true, then retrieve, list by metadata, messages, update, delete.
const runTag = `run-${Date.now()}`;
const storedChat = await client.chat.completions.create({ model: "recurrentgemma-demo", messages: [{ role: "user", content: "Hello!" }], max_tokens: 4, seed: 4,
  store: true, metadata: { run: runTag } });
const retrievedChat = await client.chat.completions.retrieve(storedChat.id);
const listedChats = [];
for await (const c of client.chat.completions.list({ metadata: { run: runTag } })) listedChats.push(c);
const chatMessages = [];
for await (const m of client.chat.completions.messages.list(storedChat.id)) chatMessages.push(m);
ok(retrievedChat.choices[0].message.content === storedChat.choices[0].message.content && listedChats.length === 1 && listedChats[0].id === storedChat.id
  && chatMessages.length === 1 && chatMessages[0].content === "Hello!", "chat.completions.retrieve, list and messages.list of a stored completion");
const updatedChat = await client.chat.completions.update(storedChat.id, { metadata: { run: "done" } });
const deletedChat = await client.chat.completions.delete(storedChat.id);
ok(updatedChat.metadata.run === "done" && deletedChat.deleted === true, "chat.completions.update and delete");
