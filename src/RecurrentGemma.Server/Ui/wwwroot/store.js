// Conversations, parameters and the API key live in this browser's localStorage only; the key is
// sent to nothing but this server (same-origin requests, enforced by the page's CSP).

const KEY = { conversations: "rg.conversations", current: "rg.current", apiKey: "rg.apiKey", params: "rg.params" };

function read(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; }
}

export const store = {
  conversations: () => read(KEY.conversations, []),
  saveConversations: (list) => localStorage.setItem(KEY.conversations, JSON.stringify(list)),
  current: () => localStorage.getItem(KEY.current),
  setCurrent: (id) => localStorage.setItem(KEY.current, id),
  apiKey: () => localStorage.getItem(KEY.apiKey) ?? "",
  setApiKey: (k) => (k ? localStorage.setItem(KEY.apiKey, k) : localStorage.removeItem(KEY.apiKey)),
  params: () => read(KEY.params, {}),
  saveParams: (p) => localStorage.setItem(KEY.params, JSON.stringify(p)),
};

export function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A new, empty conversation with its own session id (X-Session-Id): its turns continue one parked state. */
export function newConversation() {
  return { id: newId("c"), session: newId("pg-"), title: "New chat", messages: [], created: Date.now() };
}
