// The session page: follows v1/sessions/{id} over SSE as a Durable Streams client (data events
// carry arrays of events, control events the next offset), resumes from the last offset after
// any drop or server restart, and checks every event's sequence number: each must be the last
// one plus one. Only the rows in view are in the document (a virtual list), so a session of
// 100,000 events scrolls as quickly as one of ten.

import {
  el, family, FAMILY_LABELS, fmtDateTime, fmtDuration, fmtNumber, fmtRelative, fmtTime, isFailure,
  liveState, signedIn, summary, usageText,
} from "./common.js";

const sessionId = new URLSearchParams(location.search).get("id");
const $ = (id) => document.getElementById(id);
const live = $("live");
const timeline = $("timeline");
const spacer = $("spacer");
const typeSelect = $("type");
const runSelect = $("run");
const follow = $("follow");

const OVERSCAN = 8;
const RUN_END = { run_completed: "completed", run_failed: "failed", run_cancelled: "cancelled", run_timeout: "timeout" };

// The log as received: events[i] in sequence order, each checked against the previous one.
const events = [];
let lastSeq = 0;
const runs = new Map(); // run id -> what its events and its saved record say
const runRecords = new Map();
const typesSeen = new Set();
const runOptions = new Set();
let sessionInfo = null;

// The view: rows are event indexes (>= 0) or run headings (-1 - index into headings).
let filter = { type: "", run: "" };
let rows = [];
let headings = [];
let groupKey;
let eventRows = 0;
let active = -1;
let expanded = -1;
let extra = 0; // the expanded row's height beyond one row
let rowHeight = 34;
let runsDirty = true;

// The stream position, opaque as the protocol wants it: resumes send back what came last.
let offset = "-1";
let cursor = null;
let source = null;
let retryTimer = null;
let dropTimer = null;
let retryMs = 250;
// The back-off's ceiling: a server started again (on loopback, usually) is found within 2 s of
// listening, for one refused connection every 2 s while it is down.
const RETRY_MAX_MS = 2000;
let upToDate = false;

function startOver() {
  events.length = 0;
  lastSeq = 0;
  runs.clear();
  runRecords.clear();
  offset = "-1";
  cursor = null;
  active = expanded = -1;
  runsDirty = true;
  $("trimmed").hidden = true;
  rebuild();
  fail("This session was deleted and written again, or trimmed past this page, while the page was away; showing its log again from the start.");
}

function fail(message) {
  const banner = $("banner");
  banner.textContent = message;
  banner.hidden = false;
}

// Incoming events ------------------------------------------------------------------------

function receive(batch) {
  let added = 0;
  for (const event of batch) {
    const seq = event.sequence_number;
    if (seq <= lastSeq) {
      // Possible only if a connection dropped between a data event and its control event.
      console.warn(`sequence ${seq} received again after ${lastSeq}; dropped`);
      continue;
    }
    if (seq !== lastSeq + 1 && lastSeq === 0) {
      // A log read from its start begins at its first retained event: the ones before it were
      // trimmed (retention), which is no error.
      const note = $("trimmed");
      note.textContent = `Events 1 to ${fmtNumber(seq - 1)} were trimmed; this log starts at #${fmtNumber(seq)}.`;
      note.hidden = false;
    } else if (seq !== lastSeq + 1) {
      console.error(`sequence gap: expected ${lastSeq + 1}, received ${seq}`);
      fail(`Events ${lastSeq + 1} to ${seq - 1} are missing from the stream; reload the page.`);
    }
    lastSeq = seq;
    events.push(event);
    note(event);
    if (matches(event)) pushRow(events.length - 1);
    added += 1;
  }
  if (added) schedule();
}

function note(event) {
  if (!typesSeen.has(event.type)) {
    typesSeen.add(event.type);
    addTypeOption(event.type);
  }
  const fam = family(event.type);
  if (event.run_id !== null && event.run_id !== undefined) {
    let run = runs.get(event.run_id);
    if (!run) {
      run = { id: event.run_id, firstSeq: event.sequence_number, firstTs: event.timestamp, lastTs: null, count: 0, status: null, usage: null };
      runs.set(event.run_id, run);
      addRunOption(event.run_id);
    }
    run.count += 1;
    run.lastTs = event.timestamp;
    if (event.type === "run_started") run.status = "running";
    if (RUN_END[event.type]) run.status = RUN_END[event.type];
    if (event.type === "token_usage_updated") run.usage = event.data;
    runsDirty = true;
  }
  if (fam === "run") later(loadRuns, "runs");
  if (fam === "session") later(loadSession, "session");
}

const pending = {};
function later(fn, key) {
  // After a burst of run or session events, ask once for the saved records.
  if (pending[key]) return;
  pending[key] = setTimeout(() => {
    pending[key] = null;
    fn().catch(() => {});
  }, 300);
}

function addRunOption(runId) {
  if (runOptions.has(runId)) return;
  runOptions.add(runId);
  runSelect.append(el("option", { value: runId }, runId));
}

function addTypeOption(type) {
  const fam = family(type);
  const families = $("families");
  if (!families.querySelector(`option[value="family:${fam}"]`)) {
    families.append(el("option", { value: `family:${fam}` }, `all ${FAMILY_LABELS[fam]}`));
  }
  const types = $("types");
  const option = el("option", { value: type }, type);
  const after = [...types.querySelectorAll("option")].find((existing) => existing.value > type);
  types.insertBefore(option, after ?? null);
}

// Filters and rows -----------------------------------------------------------------------

function matches(event) {
  if (filter.run) {
    const runId = event.run_id ?? null;
    if (filter.run === "-" ? runId !== null : runId !== filter.run) return false;
  }
  if (filter.type) {
    if (filter.type.startsWith("family:")) return family(event.type) === filter.type.slice(7);
    return event.type === filter.type;
  }
  return true;
}

function pushRow(index) {
  const key = events[index].run_id ?? null;
  if (key !== groupKey && !(groupKey === undefined && key === null)) {
    headings.push({ runId: key, firstSeq: events[index].sequence_number });
    rows.push(-headings.length);
  }
  groupKey = key;
  rows.push(index);
  eventRows += 1;
}

function rowKey(row) {
  if (row < 0 || row >= rows.length) return null;
  const item = rows[row];
  return item >= 0 ? events[item].sequence_number : -headings[-1 - item].firstSeq;
}

function rebuild() {
  const keepActive = rowKey(active);
  const keepExpanded = rowKey(expanded);
  rows = [];
  headings = [];
  groupKey = undefined;
  eventRows = 0;
  for (let index = 0; index < events.length; index += 1) if (matches(events[index])) pushRow(index);
  active = keepActive === null ? -1 : rows.findIndex((_, row) => rowKey(row) === keepActive);
  expanded = keepExpanded === null ? -1 : rows.findIndex((_, row) => rowKey(row) === keepExpanded);
  extra = 0;
  if (active >= 0 && !follow.checked) revealLater = active;
  schedule();
}

function applyFilters() {
  filter = { type: typeSelect.value, run: runSelect.value };
  const params = new URLSearchParams({ id: sessionId });
  if (filter.type) params.set("type", filter.type);
  if (filter.run) params.set("run", filter.run);
  history.replaceState(null, "", `?${params}`);
  runsDirty = true;
  rebuild();
}

// The virtual list -----------------------------------------------------------------------

let revealLater = -1;

const top = (row) => row * rowHeight + (expanded >= 0 && row > expanded ? extra : 0);
const totalHeight = () => rows.length * rowHeight + (expanded >= 0 ? extra : 0);

function rowAt(y) {
  if (expanded >= 0 && y >= top(expanded) + rowHeight) {
    if (y < top(expanded) + rowHeight + extra) return expanded;
    return Math.floor((y - extra) / rowHeight);
  }
  return Math.floor(y / rowHeight);
}

function runFacts(runId) {
  const run = runs.get(runId);
  const record = runRecords.get(runId);
  const status = record?.status ?? run?.status ?? "unknown";
  let duration = "";
  if (record?.started_at && record.ended_at) {
    duration = fmtDuration(new Date(record.ended_at) - new Date(record.started_at));
  } else if (run && RUN_END[`run_${status}`] && run.lastTs) {
    duration = fmtDuration(new Date(run.lastTs) - new Date(run.firstTs));
  } else {
    const start = record?.started_at ?? run?.firstTs;
    if (start) duration = `${fmtDuration(Date.now() - new Date(start))} so far`;
  }
  const usage = record && Object.keys(record.token_usage ?? {}).length ? record.token_usage : run?.usage;
  return {
    status,
    duration,
    usage: usage ? usageText(usage) : "no token usage",
    count: run ? `${fmtNumber(run.count)} event${run.count === 1 ? "" : "s"}` : "no events",
  };
}

function rowNode(row) {
  const item = rows[row];
  const node = el("div", { class: "row", role: "option", "data-row": row, "aria-selected": row === active ? "true" : "false" });
  node.style.top = `${top(row)}px`;
  if (item < 0) {
    const heading = headings[-1 - item];
    node.classList.add("group");
    node.id = `heading-${heading.firstSeq}`;
    node.dataset.run = heading.runId ?? "";
    if (heading.runId === null) {
      node.append(el("div", { class: "line" }, el("span", { class: "badge" }, "no run"), el("span", { class: "text" }, "events outside any run")));
    } else {
      const facts = runFacts(heading.runId);
      node.append(
        el(
          "div",
          { class: "line" },
          el("span", { class: "badge fam-run" }, "run"),
          el("span", {}, heading.runId),
          el("span", { class: `badge status-${facts.status}` }, facts.status),
          el("span", { class: "text" }, [facts.duration, facts.usage, facts.count].filter(Boolean).join(" · ")),
        ),
      );
    }
    return node;
  }
  const event = events[item];
  const fam = family(event.type);
  node.id = `event-${event.sequence_number}`;
  node.dataset.seq = event.sequence_number;
  node.dataset.type = event.type;
  node.setAttribute("aria-expanded", row === expanded ? "true" : "false");
  node.append(
    el(
      "div",
      { class: "line" },
      el("span", { class: "seq" }, `#${event.sequence_number}`),
      el("time", { datetime: event.timestamp, title: fmtDateTime(event.timestamp) }, fmtTime(event.timestamp)),
      el("span", { class: `badge fam-${fam}${isFailure(event.type) ? " failed" : ""}` }, event.type),
      el("span", { class: "text" }, summary(event)),
    ),
  );
  if (row === expanded) {
    node.classList.add("expanded");
    node.append(el("pre", { class: "detail", tabindex: "-1" }, JSON.stringify(event, null, 2)));
  }
  return node;
}

function renderList() {
  spacer.style.height = `${totalHeight()}px`;
  if (follow.checked && rows.length) {
    timeline.scrollTop = timeline.scrollHeight;
  } else if (revealLater >= 0) {
    reveal(revealLater);
  }
  revealLater = -1;
  const y = timeline.scrollTop;
  const from = Math.max(0, rowAt(y) - OVERSCAN);
  const to = Math.min(rows.length - 1, rowAt(y + timeline.clientHeight) + OVERSCAN);
  const nodes = [spacer];
  for (let row = from; row <= to; row += 1) nodes.push(rowNode(row));
  timeline.replaceChildren(...nodes);
  if (expanded >= from && expanded <= to) {
    const node = timeline.querySelector(`[data-row="${expanded}"]`);
    const grown = Math.max(0, node.offsetHeight - rowHeight);
    if (grown !== extra) {
      extra = grown;
      schedule();
    }
  }
  const activeNode = active >= 0 ? timeline.querySelector(`[data-row="${active}"]`) : null;
  if (activeNode) timeline.setAttribute("aria-activedescendant", activeNode.id);
  else timeline.removeAttribute("aria-activedescendant");
}

function reveal(row) {
  const y = top(row);
  const height = rowHeight + (row === expanded ? extra : 0);
  if (y < timeline.scrollTop) timeline.scrollTop = y;
  else if (y + height > timeline.scrollTop + timeline.clientHeight) {
    timeline.scrollTop = Math.min(y, y + height - timeline.clientHeight);
  }
}

// Summary and runs -----------------------------------------------------------------------

function totalTokens(usage) {
  if (!usage || typeof usage !== "object") return null;
  if (typeof usage.total_tokens === "number") return usage.total_tokens;
  const input = usage.input_tokens ?? usage.prompt_tokens;
  const output = usage.output_tokens ?? usage.completion_tokens;
  return typeof input === "number" || typeof output === "number" ? (input || 0) + (output || 0) : null;
}

function renderSummary() {
  $("events").textContent = fmtNumber(events.length);
  $("latest").textContent = fmtNumber(lastSeq);
  $("agent").textContent = sessionInfo?.agent_id ?? "—";
  const status = sessionInfo?.status;
  $("status").replaceChildren(status ? el("span", { class: `badge status-${status}` }, status) : "—");
  const last = events.length ? events[events.length - 1].timestamp : sessionInfo?.last_activity;
  $("activity").replaceChildren(last ? el("time", { datetime: last, title: fmtDateTime(last) }, fmtRelative(last)) : "—");
  let tokens = null;
  for (const id of new Set([...runs.keys(), ...runRecords.keys()])) {
    const record = runRecords.get(id);
    const usage = record && Object.keys(record.token_usage ?? {}).length ? record.token_usage : runs.get(id)?.usage;
    const total = totalTokens(usage);
    if (total !== null) tokens = (tokens ?? 0) + total;
  }
  $("tokens").textContent = tokens === null ? "—" : fmtNumber(tokens);
  $("shown").textContent =
    eventRows === events.length
      ? `${fmtNumber(events.length)} event${events.length === 1 ? "" : "s"}`
      : `${fmtNumber(eventRows)} of ${fmtNumber(events.length)} events match the filters`;
}

function renderRuns() {
  const ids = [...new Set([...runRecords.keys(), ...runs.keys()])];
  ids.sort((a, b) => (runs.get(a)?.firstSeq ?? Infinity) - (runs.get(b)?.firstSeq ?? Infinity));
  $("no-runs").hidden = ids.length > 0;
  const items = ids.map((id) => {
    const facts = runFacts(id);
    const pressed = filter.run === id;
    const button = el(
      "button",
      { type: "button", "aria-pressed": pressed ? "true" : "false", "data-run": id, title: pressed ? "Show all runs" : "Show only this run" },
      el("span", { class: "run-id" }, id),
      " ",
      el("span", { class: `badge status-${facts.status}` }, facts.status),
      el("span", { class: "facts" }, [facts.duration, facts.usage, facts.count].filter(Boolean).join(" · ")),
    );
    return el("li", {}, button);
  });
  const focused = document.activeElement?.dataset?.run;
  $("runs").replaceChildren(...items);
  if (focused !== undefined && document.activeElement === document.body) {
    $("runs").querySelector(`button[data-run="${CSS.escape(focused)}"]`)?.focus();
  }
}

let frame = 0;
function schedule() {
  if (!frame) {
    frame = requestAnimationFrame(() => {
      frame = 0;
      renderSummary();
      if (runsDirty) {
        runsDirty = false;
        renderRuns();
      }
      renderList();
    });
  }
}

// The server ---------------------------------------------------------------------------

async function loadSession() {
  const response = await fetch(`v1/sessions?${new URLSearchParams({ id: sessionId })}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const listing = await response.json();
  sessionInfo = listing.sessions[0] ?? null;
  schedule();
  return sessionInfo;
}

async function loadRuns() {
  const response = await fetch(`v1/runs?${new URLSearchParams({ session_id: sessionId })}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  for (const run of (await response.json()).runs) {
    runRecords.set(run.id, run);
    addRunOption(run.id);
  }
  runsDirty = true;
  schedule();
}

// A HEAD with our offset answers 410 when the server cannot go on from it: the session was
// deleted and written again (even once the new log is longer than the one shown), or the events
// after it were trimmed. An EventSource could not tell us: it sees no status codes.
async function replaced() {
  if (offset === "-1") return false;
  const params = new URLSearchParams({ offset });
  const response = await fetch(`v1/sessions/${encodeURIComponent(sessionId)}?${params}`, {
    method: "HEAD",
    cache: "no-store",
  });
  return response.status === 410;
}

function retry(state, text, delay = retryMs) {
  clearTimeout(dropTimer);
  liveState(live, state, text);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
  retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
}

async function connect() {
  clearTimeout(retryTimer);
  let info;
  try {
    // The listing answers 200 for any id: the stream itself would be a 404 until the first
    // event, and a 404 is worth a console error in every browser.
    info = await loadSession();
  } catch {
    retry("down", "server unreachable; retrying");
    return;
  }
  if (!info || info.latest_sequence === 0) {
    retry("waiting", "no events yet; waiting for the first", 1000);
    return;
  }
  let again;
  try {
    again = info.latest_sequence < lastSeq || (await replaced());
  } catch {
    retry("down", "server unreachable; retrying");
    return;
  }
  if (again) {
    // Deleted and written again, or trimmed past us, while we were away: read it from the start.
    startOver();
  }
  loadRuns().catch(() => {});
  const params = new URLSearchParams({ offset, live: "sse" });
  if (cursor) params.set("cursor", cursor);
  source = new EventSource(`v1/sessions/${encodeURIComponent(sessionId)}?${params}`);
  source.addEventListener("data", (message) => receive(JSON.parse(message.data)));
  source.addEventListener("control", (message) => {
    const control = JSON.parse(message.data);
    offset = control.streamNextOffset;
    cursor = control.streamCursor ?? cursor;
    upToDate = control.upToDate === true;
    retryMs = 250;
    clearTimeout(dropTimer);
    liveState(live, "live", upToDate ? "live" : "catching up");
  });
  source.addEventListener("error", () => {
    // EventSource would reconnect by itself, but to the URL it was opened with: the first
    // offset. Close it and resume from the last offset instead. The server also ends each SSE
    // response after a minute, so a drop is only shown if resuming takes a while.
    source.close();
    source = null;
    clearTimeout(dropTimer);
    dropTimer = setTimeout(() => liveState(live, "down", "connection lost; resuming from the last offset"), 1000);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  });
}

// Keyboard and pointer -------------------------------------------------------------------

function setActive(row) {
  if (!rows.length) return;
  active = Math.max(0, Math.min(rows.length - 1, row));
  revealLater = active;
  follow.checked = active === rows.length - 1 && follow.checked;
  schedule();
}

function toggle(row) {
  if (row < 0) return;
  const item = rows[row];
  if (item < 0) {
    const runId = headings[-1 - item].runId;
    runSelect.value = filter.run === (runId ?? "-") ? "" : runId ?? "-";
    applyFilters();
    return;
  }
  expanded = expanded === row ? -1 : row;
  extra = 0;
  revealLater = row;
  follow.checked = false;
  schedule();
}

timeline.addEventListener("keydown", (event) => {
  const page = Math.max(1, Math.floor(timeline.clientHeight / rowHeight) - 1);
  const moves = {
    ArrowDown: active + 1, ArrowUp: active < 0 ? 0 : active - 1, PageDown: active + page, PageUp: active - page,
    Home: 0, End: rows.length - 1,
  };
  if (event.key in moves) {
    event.preventDefault();
    if (event.key === "End") follow.checked = true;
    setActive(moves[event.key]);
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    toggle(active);
  } else if (event.key === "Escape" && expanded >= 0) {
    event.preventDefault();
    expanded = -1;
    extra = 0;
    schedule();
  }
});

timeline.addEventListener("click", (event) => {
  if (event.target.closest(".detail")) return;
  const node = event.target.closest(".row");
  if (!node) return;
  const row = Number(node.dataset.row);
  active = row;
  toggle(row);
});

let scrolling = false;
timeline.addEventListener("scroll", () => {
  const atBottom = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - 4;
  if (!atBottom && follow.checked) follow.checked = false;
  if (!scrolling) {
    scrolling = true;
    requestAnimationFrame(() => {
      scrolling = false;
      renderList();
    });
  }
});

follow.addEventListener("change", () => schedule());
typeSelect.addEventListener("change", applyFilters);
runSelect.addEventListener("change", applyFilters);
$("runs").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-run]");
  if (!button) return;
  runSelect.value = filter.run === button.dataset.run ? "" : button.dataset.run;
  applyFilters();
});
$("filters").addEventListener("submit", (event) => event.preventDefault());

function measure() {
  const value = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--row-h"));
  if (value > 0 && value !== rowHeight) {
    rowHeight = value;
    extra = 0;
    schedule();
  }
}
addEventListener("resize", measure);
setInterval(() => {
  // Durations of running runs and "last activity" move with the clock.
  runsDirty = true;
  schedule();
}, 5000);

// Start ------------------------------------------------------------------------------------

if (!sessionId) {
  fail("No session given: open a session from the sessions page.");
  liveState(live, "down", "no session");
} else {
  document.title = `${sessionId} · sqlitestream`;
  $("title").textContent = sessionId;
  const download = $("download");
  download.href = `v1/export?${new URLSearchParams({ session_id: sessionId })}`;
  download.setAttribute("download", `${sessionId.replace(/[^A-Za-z0-9._-]+/g, "_")}.jsonl`);
  const params = new URLSearchParams(location.search);
  filter = { type: params.get("type") ?? "", run: params.get("run") ?? "" };
  if (filter.run && filter.run !== "-") addRunOption(filter.run);
  if (filter.type) {
    const label = filter.type.startsWith("family:") ? `all ${FAMILY_LABELS[filter.type.slice(7)] ?? filter.type}` : filter.type;
    (filter.type.startsWith("family:") ? $("families") : $("types")).append(el("option", { value: filter.type }, label));
    if (!filter.type.startsWith("family:")) typesSeen.add(filter.type);
  }
  typeSelect.value = filter.type;
  runSelect.value = filter.run;
  measure();
  signedIn().then(connect, () => liveState(live, "down", "server unreachable; reload to retry"));
}
