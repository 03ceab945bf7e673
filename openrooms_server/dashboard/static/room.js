// A room, live: its log streamed over the API's SSE stream (resumable), older pages of the
// log loaded on scroll, the graph's current/visited/failed nodes and the room's status,
// node, variables, memory and usage kept up to date. Every value from the room is written
// with textContent or setAttribute: never parsed as markup.
import { DISCONNECTED, el, getJSON, setLive, when } from "./live.js";

const main = document.getElementById("main");
const roomId = main.dataset.room;
const base = `/api/rooms/${encodeURIComponent(roomId)}`;
const log = document.getElementById("log");
const renderedStatus = main.dataset.status;
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const PAGE = 200;
const LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

const params = new URLSearchParams(location.search);
const levelFilter = (params.get("level") || "").toUpperCase();
const typeFilter = (params.get("type") || "").toUpperCase();

let logMax = Math.max(0, ...Array.from(log.querySelectorAll("li.event"), (li) => Number(li.dataset.seq)));
let liveMax = Number(main.dataset.lastSeq) || 0;
let pagerDone = log.dataset.next === "";
let loading = false;

// --- the log --------------------------------------------------------------------------------

function wanted(e) {
  if (levelFilter && LEVELS.indexOf(e.level) < LEVELS.indexOf(levelFilter)) return false;
  return !typeFilter || e.type === typeFilter;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms >= 10 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

function summary(e) {
  const d = e.data || {};
  if (e.error) return `${e.error.type}: ${e.error.message}`;
  if (e.type === "TRANSITION") return `${d.from ?? e.node ?? ""} \u2192 ${d.to ?? ""}`;
  if (e.type === "TOOL_CALLED") return `tool ${d.tool ?? ""}`;
  if (e.type === "LLM_CALLED") return `model ${d.model ?? ""}`;
  for (const key of ["reason", "prompt", "message"]) {
    if (typeof d[key] === "string") return d[key];
  }
  const keys = Object.keys(d);
  if (!keys.length) return "";
  const text = JSON.stringify(d);
  return text.length <= 200 ? text : `${text.slice(0, 199)}\u2026`;
}

function details(className, title, parts) {
  const box = el("details", className);
  box.append(el("summary", null, title));
  for (const [heading, text, preClass] of parts) {
    if (heading) box.append(el("h3", null, heading));
    box.append(el("pre", preClass, text));
  }
  return box;
}

/** The <li> of an event: the same structure the server renders. */
function eventItem(e) {
  const level = String(e.level).toLowerCase();
  const li = el("li", `event level-${level}`);
  li.dataset.seq = String(e.seq);
  li.dataset.type = e.type;
  li.dataset.level = level;
  const line = el("div", "event-line");
  line.append(
    el("span", "seq", `#${e.seq}`),
    el("time", "time", when(e.timestamp)),
    el("span", "level", level),
    el("span", "type", e.type),
    el("span", "node", e.node ?? ""),
    el("span", "duration", duration(e.duration_ms)),
    el("span", "message", summary(e)),
  );
  li.append(line);
  if (e.error && e.error.traceback) {
    li.append(details("traceback", "Traceback", [[null, e.error.traceback, null]]));
  }
  if (e.type === "LLM_CALLED" || e.type === "TOOL_CALLED") {
    const d = { ...(e.data || {}) };
    const reply = "response" in d ? d.response : "result" in d ? d.result : null;
    delete d.response;
    delete d.result;
    li.append(
      details("payload", "Request and reply", [
        ["Request", JSON.stringify(d, null, 2), "request"],
        ["Reply", JSON.stringify(reply, null, 2), "reply"],
      ]),
    );
  }
  return li;
}

function append(e) {
  if (e.seq <= logMax) return;
  logMax = e.seq;
  if (wanted(e)) log.append(eventItem(e));
}

async function loadMore() {
  if (loading || pagerDone) return;
  loading = true;
  try {
    const query = new URLSearchParams({ after: String(log.dataset.next || logMax), limit: String(PAGE) });
    if (levelFilter) query.set("level", levelFilter);
    if (typeFilter) query.append("type", typeFilter);
    const page = await getJSON(`${base}/logs?${query}`);
    for (const e of page.items) append(e);
    if (page.next === null) {
      // caught up: from here on the stream appends (events it already sent are read here)
      pagerDone = true;
      log.dataset.next = "";
      document.getElementById("log-more")?.remove();
      if (liveMax > logMax) {
        pagerDone = false;
        log.dataset.next = String(logMax);
      }
    } else {
      log.dataset.next = String(page.next);
    }
    setLive("");
  } catch {
    setLive(DISCONNECTED);
  } finally {
    loading = false;
  }
  if (!pagerDone && nearEnd()) loadMore();
}

function nearEnd() {
  return log.getBoundingClientRect().bottom < window.innerHeight + 400;
}

const sentinel = el("div", "log-sentinel");
log.after(sentinel);
if ("IntersectionObserver" in window) {
  new IntersectionObserver((entries) => {
    if (entries.some((x) => x.isIntersecting)) loadMore();
  }, { rootMargin: "400px" }).observe(sentinel);
} else {
  window.addEventListener("scroll", () => nearEnd() && loadMore(), { passive: true });
}

// --- the graph ------------------------------------------------------------------------------

function nodeBox(id) {
  if (!id) return null;
  for (const g of document.querySelectorAll("#graph g.node")) {
    if (g.dataset.node === id) return g;
  }
  return null;
}

function moveTo(id) {
  for (const g of document.querySelectorAll("#graph g.node.current")) g.classList.remove("current");
  const g = nodeBox(id);
  if (g) g.classList.add("current", "visited");
}

function onGraph(e) {
  const g = nodeBox(e.node);
  switch (e.type) {
    case "NODE_STARTED":
      moveTo(e.node);
      g?.classList.remove("failed");
      break;
    case "ROOM_WAITING":
      moveTo(e.node);
      break;
    case "NODE_FAILED":
    case "ROOM_FAILED":
      g?.classList.add("failed");
      break;
    case "TRANSITION": {
      const target = e.data && e.data.to;
      if (typeof target === "string") moveTo(target);
      break;
    }
    default:
  }
}

// --- the room's state -----------------------------------------------------------------------

function setText(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

const shownValues = new Map();

function values(sectionId, entries, attr, emptyText) {
  const key = JSON.stringify(entries);
  if (shownValues.get(sectionId) === key) return; // unchanged: a selection in it stays
  shownValues.set(sectionId, key);
  const section = document.getElementById(sectionId);
  const list = section?.querySelector("dl.values");
  if (!list) return;
  const items = [];
  for (const [name, value] of entries) {
    const pre = el("pre", "value", JSON.stringify(value, null, 2));
    pre.setAttribute(attr, name);
    const dd = el("dd");
    dd.append(pre);
    items.push(el("dt", null, name), dd);
  }
  list.replaceChildren(...items);
  section.querySelector("p.empty")?.remove();
  if (!entries.length) section.append(el("p", "empty", emptyText));
}

function usage(u) {
  const list = document.getElementById("usage");
  if (!list) return;
  const rows = [
    ["Model calls", String(u.model_calls ?? 0)],
    ["Tool calls", String(u.tool_calls ?? 0)],
    ["Prompt tokens", String(u.prompt_tokens ?? 0)],
    ["Completion tokens", String(u.completion_tokens ?? 0)],
    ["Cost (USD)", Number(u.cost_usd ?? 0).toFixed(4)],
  ];
  list.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", null, k), el("dd", null, v)]));
}

let refreshTimer = null;
let shownStatus = renderedStatus;

/** Replace the actions (the wait form, cancel, resume) with the server's current ones: this
 * page fetched again and its own escaped HTML taken over, never markup built from data. */
async function swapActions() {
  try {
    const response = await fetch(location.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      cache: "no-store",
    });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const updated = fresh.getElementById("actions");
    const old = document.getElementById("actions");
    if (updated && old) old.replaceWith(document.adoptNode(updated));
  } catch {
    setLive(DISCONNECTED);
  }
}

async function refreshRoom() {
  refreshTimer = null;
  let room;
  try {
    room = await getJSON(base);
  } catch {
    setLive(DISCONNECTED);
    scheduleRefresh(2000);
    return;
  }
  const status = room.status;
  if ((status === "waiting") !== (shownStatus === "waiting")) {
    await swapActions(); // the wait form appears (or goes): as the server renders it
  }
  shownStatus = status;
  const statusCell = document.getElementById("room-status");
  if (statusCell) {
    statusCell.className = `status status-${status}`;
    setText("room-status", status);
  }
  setText("room-node", room.current_node ?? "");
  setText("room-updated", `${when(room.updated_at)} UTC`);
  moveTo(room.current_node);
  values("variables", Object.entries(room.variables || {}), "data-var", "No variables.");
  values("memory", Object.entries(room.memory || {}), "data-key", "Nothing in memory.");
  usage(room.usage || {});
  if (TERMINAL.has(status)) {
    for (const id of ["cancel-room", "resume-room", "cancel-reason"]) {
      const control = document.getElementById(id);
      if (control) control.disabled = true;
    }
  }
}

function scheduleRefresh(delay = 400) {
  if (refreshTimer === null) refreshTimer = setTimeout(refreshRoom, delay);
}

// --- the stream -----------------------------------------------------------------------------

let source = null;
let retryMs = 1000;

function connect() {
  source = new EventSource(`${base}/logs/stream?after=${liveMax}`);
  source.onopen = () => {
    retryMs = 1000;
    setLive("");
  };
  source.onmessage = (message) => {
    let e;
    try {
      e = JSON.parse(message.data);
    } catch {
      return;
    }
    if (e.seq <= liveMax) return;
    liveMax = e.seq;
    onGraph(e);
    if (pagerDone) append(e);
    scheduleRefresh();
  };
  source.addEventListener("end", () => {
    source.close();
    setLive("");
    scheduleRefresh(0);
  });
  source.onerror = () => {
    setLive(DISCONNECTED);
    if (source.readyState === EventSource.CLOSED) {
      // refused (the server answered with an error): try again ourselves, backing off
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    }
  };
}

if (!TERMINAL.has(renderedStatus) || liveMax > logMax || !pagerDone) {
  connect();
}
if (!pagerDone && nearEnd()) loadMore();

// the log filters apply as soon as they change (the Filter button does it without JS)
for (const id of ["log-level", "log-type"]) {
  document.getElementById(id)?.addEventListener("change", () => {
    document.getElementById("log-filters")?.requestSubmit();
  });
}
