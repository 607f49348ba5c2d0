// Shared by both pages: building elements, formatting, event families and summaries.
// URLs are relative to the page, so the viewer also works where the app is mounted under a
// prefix inside another ASGI application.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const numbers = new Intl.NumberFormat("en");
export const fmtNumber = (value) => numbers.format(value);

export function fmtTime(iso) {
  // HH:MM:SS.mmm in local time: a timeline is read by its order and its gaps in time.
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function fmtDateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function fmtRelative(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  if (minutes < 60) return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// Families by type name, so that types added later still get a colour.
export function family(type) {
  if (type === "token_usage_updated") return "usage";
  if (type.startsWith("error_") || type === "policy_violation") return "error";
  for (const prefix of ["session", "run", "message", "tool_call"]) {
    if (type.startsWith(prefix + "_")) return prefix === "tool_call" ? "tool" : prefix;
  }
  return "other";
}

export const FAMILY_LABELS = {
  session: "session events",
  run: "run events",
  message: "messages",
  tool: "tool calls",
  error: "errors",
  usage: "token usage",
  other: "other events",
};

export function isFailure(type) {
  return /_(failed|timeout)$/.test(type) || family(type) === "error";
}

export function compact(value, max = 240) {
  let text;
  try {
    text = typeof value === "string" ? value : JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = "";
  text = text.replace(/\s+/g, " ");
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

function first(data, names) {
  for (const name of names) {
    const value = data[name];
    if (value !== undefined && value !== null && value !== "") return value;
  }
  return undefined;
}

function textOf(value) {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    // Content as a list of parts ({"type": "text", "text": ...}), as several model APIs send it.
    return value.map((part) => (typeof part === "string" ? part : part && (part.text ?? part.content ?? ""))).join(" ");
  }
  return value === undefined ? undefined : compact(value);
}

export function usageText(usage) {
  if (!usage || typeof usage !== "object") return "";
  const input = first(usage, ["input_tokens", "prompt_tokens", "input"]);
  const output = first(usage, ["output_tokens", "completion_tokens", "output"]);
  let total = first(usage, ["total_tokens", "total"]);
  if (total === undefined && typeof input === "number" && typeof output === "number") total = input + output;
  const parts = [];
  if (input !== undefined) parts.push(`in ${fmtNumber(input)}`);
  if (output !== undefined) parts.push(`out ${fmtNumber(output)}`);
  if (total !== undefined) parts.push(`total ${fmtNumber(total)}`);
  return parts.length ? parts.join(" · ") + " tokens" : compact(usage, 120);
}

// What a developer reads first in each kind of event; the full JSON is one keystroke away.
export function summary(event) {
  const data = event.data && typeof event.data === "object" ? event.data : {};
  const fam = family(event.type);
  if (fam === "message") {
    const role = first(data, ["role", "author", "from"]);
    const text = textOf(first(data, ["content", "text", "message", "delta", "body"]));
    if (text !== undefined) return compact((role ? `${role}: ` : "") + text);
  }
  if (fam === "tool") {
    const fn = data.function && typeof data.function === "object" ? data.function : {};
    const name = first(data, ["tool", "tool_name", "name"]) ?? first(fn, ["name"]);
    const detail = event.type.endsWith("_failed")
      ? first(data, ["error", "message"])
      : event.type.endsWith("_completed")
        ? first(data, ["result", "output", "content"])
        : first(data, ["arguments", "args", "input", "parameters", "params"]) ?? first(fn, ["arguments"]);
    let rest = detail;
    if (rest === undefined) {
      rest = Object.fromEntries(Object.entries(data).filter(([key]) => !["tool", "tool_name", "name"].includes(key)));
      if (Object.keys(rest).length === 0) rest = "";
    }
    const text = typeof rest === "string" ? rest : compact(rest);
    return compact([name, text].filter(Boolean).join(" "));
  }
  if (fam === "error" || event.type.endsWith("_failed") || event.type.endsWith("_timeout")) {
    const error = first(data, ["message", "error", "reason", "detail"]);
    if (error !== undefined) {
      const message = typeof error === "object" ? first(error, ["message", "type"]) ?? compact(error) : error;
      const kind = first(data, ["type", "code", "kind"]);
      return compact((kind && typeof kind === "string" ? `${kind}: ` : "") + message);
    }
  }
  if (fam === "usage") return usageText(data);
  return Object.keys(data).length ? compact(data) : "";
}

export function liveState(node, state, text) {
  node.dataset.state = state;
  if (node.textContent !== text) node.textContent = text;
}

export async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// A server started with a token: the page asks for it once and exchanges it for an HttpOnly
// cookie (POST v1/auth, the token in the body, never in a URL), which the browser then sends
// with the page's own reads and its EventSource. Resolves once the page may read.
export async function signedIn() {
  const state = await (await fetch("v1/auth", { cache: "no-store" })).json();
  if (!state.token_required || state.signed_in) return;
  const input = el("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const message = el("p", { class: "signin-error", role: "alert" });
  const form = el(
    "form",
    { id: "signin", class: "signin", "aria-label": "Sign in" },
    el("p", { text: "This server needs its token (the one given to sqlitestream serve --token)." }),
    el("label", { for: "token", text: "Token" }),
    input,
    el("button", { type: "submit", text: "Sign in" }),
    message,
  );
  document.querySelector("main").prepend(form);
  input.focus();
  await new Promise((resolve) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch("v1/auth", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: input.value }),
        cache: "no-store",
      });
      if (response.ok) {
        form.remove();
        resolve();
      } else {
        message.textContent = response.status === 401 ? "That is not the server's token." : await errorText(response);
        input.select();
      }
    });
  });
}
