// Model output is untrusted. It is rendered with DOM nodes and textContent only — never
// innerHTML — so markup in the text (<img onerror=…>, <script>) stays text. Supported: fenced
// code blocks (```lang … ```), inline `code`, and paragraphs separated by blank lines.

/** Replaces the children of `container` with `text` rendered as paragraphs and code. */
export function renderText(container, text) {
  const nodes = [];
  const fence = /```([^\n`]*)\n?([\s\S]*?)(?:```|$)/g;
  let last = 0;
  for (let m; (m = fence.exec(text)) !== null;) {
    if (m.index > last) nodes.push(...paragraphs(text.slice(last, m.index)));
    const pre = document.createElement("pre");
    const code = document.createElement("code");
    if (m[1].trim()) code.dataset.lang = m[1].trim();
    code.textContent = m[2];
    pre.append(code);
    nodes.push(pre);
    last = fence.lastIndex;
    if (m[0].length === 0) break;
  }
  if (last < text.length) nodes.push(...paragraphs(text.slice(last)));
  container.replaceChildren(...nodes);
}

function paragraphs(text) {
  return text.split(/\n{2,}/).filter((p) => p.length > 0).map((p) => {
    const el = document.createElement("p");
    const parts = p.split(/(`[^`\n]+`)/);
    for (const part of parts) {
      if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) {
        const code = document.createElement("code");
        code.textContent = part.slice(1, -1);
        el.append(code);
      } else if (part) {
        el.append(document.createTextNode(part));
      }
    }
    return el;
  });
}
