// The playground: conversations (kept in this browser), streamed chat over /v1/chat/completions
// with one session id per conversation, per-answer statistics, and the engine panel.

import { ApiError, getJson, streamChat } from "./api.js";
import { startEnginePanel } from "./engine.js";
import { renderText } from "./render.js";
import { newConversation, store } from "./store.js";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), apiKey: $("api-key"), banner: $("demo-banner"), error: $("error"), sidebar: $("sidebar"),
  toggleSidebar: $("toggle-sidebar"), newChat: $("new-chat"), conversations: $("conversations"), messages: $("messages"),
  composer: $("composer"), input: $("composer-input"), send: $("send"), stop: $("stop"), engine: $("engine"),
};
const params = {
  system: $("p-system"), temperature: $("p-temperature"), top_p: $("p-top-p"), top_k: $("p-top-k"),
  max_tokens: $("p-max-tokens"), seed: $("p-seed"), stop: $("p-stop"), schema: $("p-schema"),
};

let conversations = store.conversations();
let current = conversations.find((c) => c.id === store.current()) ?? null;
let running = null;   // the AbortController of the answer being streamed

function showError(message) {
  ui.error.textContent = message ?? "";
  ui.error.hidden = !message;
}

function save() { store.saveConversations(conversations); }

// ---- conversations -------------------------------------------------------------------------

function select(conversation) {
  current = conversation;
  if (conversation) store.setCurrent(conversation.id);
  renderSidebar();
  renderMessages();
}

function renderSidebar() {
  ui.conversations.replaceChildren(...conversations.map((c) => {
    const li = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = c.title;
    open.setAttribute("aria-current", String(c === current));
    open.addEventListener("click", () => select(c));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "✕";
    remove.setAttribute("aria-label", `Delete conversation “${c.title}”`);
    remove.addEventListener("click", () => {
      conversations = conversations.filter((x) => x !== c);
      save();
      select(current === c ? conversations[0] ?? null : current);
    });
    li.append(open, remove);
    return li;
  }));
}

// ---- messages ------------------------------------------------------------------------------

function statsLine(s) {
  const parts = [`prompt ${s.prompt ?? "?"} tokens`, `cached ${s.cached ?? 0}`];
  if (s.ttft != null) parts.push(`first token ${Math.round(s.ttft)} ms`);
  if (s.tps != null) parts.push(`${s.tps.toFixed(1)} tokens/s`);
  parts.push(`finish: ${s.finish ?? "?"}`);
  return parts.join(" · ");
}

function messageItem(message, index, last) {
  const li = document.createElement("li");
  li.className = `message ${message.role}`;
  const role = document.createElement("div");
  role.className = "role";
  role.textContent = message.role === "user" ? "You" : "Model";
  const body = document.createElement("div");
  body.className = "body";
  renderText(body, message.content);
  li.append(role, body);
  if (message.stats) {
    const stats = document.createElement("div");
    stats.className = "stats";
    stats.textContent = statsLine(message.stats);
    li.append(stats);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  actions.append(button("Copy", `Copy this ${message.role === "user" ? "message" : "answer"}`, () => copy(message.content)));
  if (last && message.role === "assistant") actions.append(button("Regenerate", "Regenerate the last answer", regenerate));
  if (message.role === "user" && index >= current.messages.length - 2) actions.append(button("Edit", "Edit and resend your last message", editLast));
  li.append(actions);
  return li;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.disabled = running !== null && text !== "Copy";
  b.addEventListener("click", onClick);
  return b;
}

function renderMessages() {
  const list = current?.messages ?? [];
  ui.messages.replaceChildren(...list.map((m, i) => messageItem(m, i, i === list.length - 1)));
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

async function copy(text) {
  try { await navigator.clipboard.writeText(text); } catch {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// ---- generation ----------------------------------------------------------------------------

function requestBody() {
  const p = {};
  for (const [k, el] of Object.entries(params)) p[k] = el.value;
  store.saveParams(p);
  const body = { model: ui.model.value || undefined, max_tokens: Number(p.max_tokens) || 256 };
  if (p.temperature !== "") body.temperature = Number(p.temperature);
  if (p.top_p !== "") body.top_p = Number(p.top_p);
  if (Number(p.top_k) > 0) body.top_k = Number(p.top_k);
  if (p.seed !== "") body.seed = Number(p.seed);
  const stops = p.stop.split("\n").filter((s) => s.length > 0);
  if (stops.length) body.stop = stops.slice(0, 4);
  if (p.schema.trim()) {
    let schema;
    try { schema = JSON.parse(p.schema); } catch (e) { throw new ApiError(400, `The JSON schema box does not hold valid JSON: ${e.message}`, "schema"); }
    body.response_format = { type: "json_schema", json_schema: { name: "playground", schema, strict: true } };
  }
  const messages = current.messages.filter((m) => !m.failed).map((m) => ({ role: m.role, content: m.content }));
  if (p.system.trim()) messages.unshift({ role: "system", content: p.system });
  body.messages = messages;
  return body;
}

async function answer() {
  showError(null);
  const conversation = current;
  let body;
  try { body = requestBody(); } catch (e) { showError(e.message); return; }
  const reply = { role: "assistant", content: "" };
  conversation.messages.push(reply);
  running = new AbortController();
  setBusy(true);
  renderMessages();
  const bubble = ui.messages.lastElementChild.querySelector(".body");
  const started = performance.now();
  let first = null, last = null, drawing = false;
  try {
    const { usage, finish } = await streamChat(body, conversation.session, running.signal, (delta) => {
      last = performance.now();
      first ??= last;
      reply.content += delta;
      // Redraw once a frame, not once a token: rendering the whole answer per token grows with
      // its square and, on a long answer, fell behind the server.
      if (drawing) return;
      drawing = true;
      requestAnimationFrame(() => {
        drawing = false;
        renderText(bubble, reply.content);
        ui.messages.scrollTop = ui.messages.scrollHeight;
      });
    });
    const tokens = usage?.completion_tokens ?? 0;
    reply.stats = {
      prompt: usage?.prompt_tokens, cached: usage?.prompt_tokens_details?.cached_tokens ?? 0, finish,
      ttft: first === null ? null : first - started,
      tps: first !== null && last > first && tokens > 1 ? (tokens - 1) / ((last - first) / 1000) : null,
    };
  } catch (e) {
    if (e.name === "AbortError") reply.stats = { finish: "stopped", ttft: first === null ? null : first - started };
    else {
      showError(e.message);
      if (e.status === 401) ui.apiKey.focus();
      conversation.messages.pop();   // nothing was answered
    }
  } finally {
    running = null;
    setBusy(false);
    save();
    if (current === conversation) renderMessages();
  }
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.hidden = !busy;
  if (!busy) ui.input.focus();
}

async function send(text) {
  if (!current) { current = newConversation(); conversations.unshift(current); }
  if (current.messages.length === 0) current.title = text.slice(0, 40) || "New chat";
  current.messages.push({ role: "user", content: text });
  save();
  select(current);
  await answer();
}

function regenerate() {
  if (running || current?.messages.at(-1)?.role !== "assistant") return;
  current.messages.pop();
  answer();
}

function editLast() {
  if (running || !current) return;
  const i = current.messages.findLastIndex((m) => m.role === "user");
  if (i < 0) return;
  ui.input.value = current.messages[i].content;
  current.messages.splice(i);
  save();
  renderMessages();
  ui.input.focus();
}

// ---- wiring --------------------------------------------------------------------------------

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.input.value.trim();
  if (!text || running) return;
  ui.input.value = "";
  send(text);
});
ui.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); ui.composer.requestSubmit(); }
});
ui.stop.addEventListener("click", () => running?.abort());
ui.newChat.addEventListener("click", () => {
  const c = newConversation();
  conversations.unshift(c);
  save();
  select(c);
  ui.input.focus();
});
ui.toggleSidebar.addEventListener("click", () => {
  const shown = ui.sidebar.classList.toggle("shown");
  ui.toggleSidebar.setAttribute("aria-expanded", String(shown));
});
ui.apiKey.value = store.apiKey();
ui.apiKey.addEventListener("change", () => { store.setApiKey(ui.apiKey.value); loadModels(); });
const saved = store.params();
for (const [k, el] of Object.entries(params)) if (saved[k] !== undefined) el.value = saved[k];

async function loadModels() {
  try {
    const models = await getJson("/v1/models");
    ui.model.replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
    showError(null);
  } catch (e) {
    showError(e.message);
  }
}

loadModels();
startEnginePanel(ui.engine, (status) => { if (status) ui.banner.hidden = !status.demo; });
select(current ?? conversations[0] ?? null);
