// The server's API as the page uses it: every call carries the typed API key, errors come back
// as OpenAI's envelope and are turned into one readable line.

import { store } from "./store.js";

export class ApiError extends Error {
  constructor(status, message, param) { super(message); this.status = status; this.param = param; }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = store.apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function fail(response) {
  let message = response.statusText || "request failed", param = null;
  try { const body = await response.json(); message = body.error?.message ?? message; param = body.error?.param ?? null; } catch { /* not JSON */ }
  if (response.status === 401) message = "401 Unauthorized — this server needs an API key: type it in the “API key” box above. (" + message + ")";
  else message = `${response.status}: ${message}`;
  throw new ApiError(response.status, message, param);
}

export async function getJson(path) {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) await fail(r);
  return r.json();
}

/**
 * Streams a chat completion. Calls onDelta(text) per content delta; resolves with
 * { usage, finish } when the stream ends; rejects with ApiError (or AbortError when stopped).
 */
export async function streamChat(body, session, signal, onDelta) {
  const r = await fetch("/v1/chat/completions", {
    method: "POST", signal,
    headers: headers({ "Content-Type": "application/json", "X-Session-Id": session }),
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (!r.ok) await fail(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", usage = null, finish = null, yielded = performance.now();
  for (;;) {
    // Reads of data already buffered resolve as microtasks, which run before any click: when the
    // server is ahead of the page, the rest of the answer would be read to its end before Stop
    // could run (a test saw a 4000-token answer finish "length" after Stop was clicked). So give
    // the event loop a turn every frame's worth of reading, and stop here if Stop came in it.
    if (performance.now() - yielded > 16) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      yielded = performance.now();
      signal?.throwIfAborted();
    }
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const chunk = JSON.parse(line.slice(6));
        if (chunk.error) throw new ApiError(500, chunk.error.message, chunk.error.param);
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices ?? []) {
          if (choice.delta?.content) onDelta(choice.delta.content);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
  }
  return { usage, finish };
}
