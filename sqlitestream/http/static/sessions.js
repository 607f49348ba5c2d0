// The sessions page: GET v1/sessions with the filters, refreshed every second with its ETag
// (a 304 when nothing changed), so sessions created or written by any process appear without
// a reload. A store-wide change feed would let this wait instead of asking; until the server
// has one, a conditional request a second is the cheap honest choice.

import { el, fmtDateTime, fmtNumber, fmtRelative, liveState, errorText, signedIn } from "./common.js";

const REFRESH_MS = 1000;
const form = document.getElementById("filters");
const inputs = {
  status: document.getElementById("status"),
  agent: document.getElementById("agent"),
  q: document.getElementById("q"),
};
const tbody = document.querySelector("#sessions tbody");
const count = document.getElementById("count");
const live = document.getElementById("live");
const agents = document.getElementById("agents");

let etag = null;
let lastQuery = null;
let timer = null;
let inFlight = false;
let again = false;

function query() {
  const params = new URLSearchParams();
  for (const [name, input] of Object.entries(inputs)) {
    const value = input.value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function restoreFilters() {
  const params = new URLSearchParams(location.search);
  for (const [name, input] of Object.entries(inputs)) input.value = params.get(name) ?? "";
}

function sessionLink(id) {
  return `session?${new URLSearchParams({ id })}`;
}

function render(listing) {
  const focusedId = document.activeElement?.closest?.("tr")?.dataset.id;
  const rows = listing.sessions.map((session) =>
    el(
      "tr",
      { "data-id": session.session_id },
      el("td", { class: "id", "data-label": "Session" }, el("a", { href: sessionLink(session.session_id) }, session.session_id)),
      el("td", { "data-label": "Agent" }, session.agent_id ?? "—"),
      el(
        "td",
        { "data-label": "Status" },
        session.status ? el("span", { class: `badge status-${session.status}` }, session.status) : "—",
      ),
      el("td", { class: "num", "data-label": "Events" }, fmtNumber(session.event_count)),
      el("td", { class: "num", "data-label": "Latest seq" }, fmtNumber(session.latest_sequence)),
      el(
        "td",
        { "data-label": "Last activity" },
        session.last_activity
          ? el("time", { datetime: session.last_activity, title: fmtDateTime(session.last_activity) }, fmtRelative(session.last_activity))
          : "—",
      ),
    ),
  );
  tbody.replaceChildren(...rows);
  if (focusedId !== undefined) {
    tbody.querySelector(`tr[data-id="${CSS.escape(focusedId)}"] a`)?.focus();
  }
  const shown = listing.sessions.length;
  count.textContent =
    listing.total === 0
      ? "No sessions match."
      : shown < listing.total
        ? `Showing the ${fmtNumber(shown)} most recent of ${fmtNumber(listing.total)} sessions; narrow the filters to see others.`
        : `${fmtNumber(listing.total)} session${listing.total === 1 ? "" : "s"}`;
  const known = new Set([...agents.options].map((option) => option.value));
  for (const agent of listing.agents) if (!known.has(agent)) agents.append(el("option", { value: agent }));
}

function touchTimes() {
  const now = Date.now();
  for (const node of tbody.querySelectorAll("time")) {
    const text = fmtRelative(node.getAttribute("datetime"), now);
    if (node.textContent !== text) node.textContent = text;
  }
}

async function refresh() {
  clearTimeout(timer);
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = true;
  const params = query();
  const key = params.toString();
  if (key !== lastQuery) etag = null;
  try {
    const headers = etag ? { "If-None-Match": etag } : {};
    const response = await fetch(`v1/sessions?${params}`, { cache: "no-store", headers });
    if (response.status === 304) {
      touchTimes();
    } else if (response.ok) {
      const listing = await response.json();
      if (query().toString() === key) {
        etag = response.headers.get("ETag");
        lastQuery = key;
        render(listing);
      }
    } else {
      liveState(live, "down", await errorText(response));
      return;
    }
    liveState(live, "live", "live");
  } catch {
    liveState(live, "down", "server unreachable; retrying");
  } finally {
    inFlight = false;
    if (again) {
      again = false;
      refresh();
    } else if (!document.hidden) {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }
}

function filtersChanged() {
  const params = query();
  history.replaceState(null, "", params.size ? `?${params}` : location.pathname);
  refresh();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  filtersChanged();
});
inputs.status.addEventListener("change", filtersChanged);
inputs.agent.addEventListener("change", filtersChanged);
let typing = null;
for (const input of [inputs.agent, inputs.q]) {
  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(filtersChanged, 200);
  });
}
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && !(event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement)) {
    event.preventDefault();
    inputs.q.focus();
  }
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

restoreFilters();
signedIn().then(refresh, () => liveState(live, "down", "server unreachable; reload to retry"));
