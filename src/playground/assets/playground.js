// The playground page: picks an event, asks /api/render what it does, and keeps the template,
// the card JSON, the errors, the size and the preview in step as the user types.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const $ = (id) => document.getElementById(id);
const state = { samples: [], recent: [], cards: [], connections: [], write: false };

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const json = await res.json().catch(() => ({ error: "invalid_answer", detail: res.statusText }));
  return { status: res.status, json };
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function debounce(f, ms) {
  let t;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => f(...a), ms);
  };
}

// The event the picker names: {source, headers, payload}, or an error string.
function pickedEvent() {
  const v = $("event").value;
  if (v.startsWith("sample:")) {
    const s = state.samples[Number(v.slice(7))];
    return { source: s.source, headers: s.headers, payload: s.payload };
  }
  if (v.startsWith("recent:")) {
    const e = state.recent[Number(v.slice(7))];
    return { source: e.source, headers: e.headers, payload: e.payload };
  }
  let payload;
  try {
    payload = JSON.parse($("payload").value);
  } catch (e) {
    return `the pasted payload is not JSON: ${e.message}`;
  }
  const source = $("source").value;
  const kind = $("source").selectedOptions[0]?.dataset.kind;
  const headers = {};
  const type = $("event-type").value.trim();
  if (kind === "github") headers["X-GitHub-Event"] = type;
  else if (kind === "gitlab") headers["X-Gitlab-Event"] = type;
  else if (type) headers["X-Event-Type"] = type;
  return { source, headers, payload };
}

function showErrors(errors) {
  const ul = $("errors");
  ul.replaceChildren();
  for (const e of errors) {
    const li = document.createElement("li");
    const msg = typeof e === "string" ? e : e.message;
    const at = e.line != null ? `line ${e.line}, column ${e.column}: ` : "";
    li.textContent = at + msg;
    ul.appendChild(li);
  }
}

function showSize(bytes, limit) {
  $("size").textContent = bytes == null ? "" : `${bytes} of ${limit} bytes`;
  $("size").className = bytes > limit ? "error" : "muted";
}

async function showPreview(kind, body) {
  const el = $("preview");
  if (kind === "workflow" && window.AdaptiveCards) {
    const content = body?.attachments?.[0]?.content;
    const card = new AdaptiveCards.AdaptiveCard();
    try {
      card.parse(content);
      const rendered = card.render();
      el.replaceChildren(rendered || document.createTextNode("(nothing to show)"));
    } catch (e) {
      el.textContent = `The Adaptive Cards renderer refused this card: ${e.message}`;
    }
    const r = await newest("preview", "POST", "/api/preview", { kind, body });
    if (r && r.status === 200) {
      showErrors(r.json.errors);
      showSize(r.json.bytes, r.json.limit);
    }
    return;
  }
  const r = await newest("preview", "POST", "/api/preview", { kind, body });
  if (!r) return;
  if (r.status !== 200) {
    showErrors([r.json.detail]);
    return;
  }
  el.innerHTML = r.json.html; // laid out and sanitised by the server
  showErrors(r.json.errors);
  showSize(r.json.bytes, r.json.limit);
}

// What a later card with the same key does to this one's message on this kind of chat.
function showSubject(subject) {
  $("subject").textContent = subject
    ? `Key ${subject.key} (update: ${subject.update}): a later card with this key ${subject.effect}.`
    : "";
}

function showCard(c) {
  showSubject(c && c.subject);
  if (!c) {
    $("card").value = "";
    $("preview").replaceChildren();
    showErrors([]);
    showSize(null);
    return;
  }
  if (c.valid) {
    $("card").value = JSON.stringify(c.body, null, 2);
    showPreview(c.kind, c.body);
  } else {
    showErrors(c.errors);
    showSize(null);
  }
}

// Answers can come back out of order: only the newest request of each kind is shown.
const latest = {};
async function newest(kind, method, path, body) {
  const n = (latest[kind] = (latest[kind] || 0) + 1);
  const r = await api(method, path, body);
  return latest[kind] === n ? r : null;
}

// Renders the picked event with every rule (loaded templates).
async function renderAll() {
  const ev = pickedEvent();
  if (typeof ev === "string") {
    showErrors([ev]);
    return;
  }
  latest.card = (latest.card || 0) + 1; // an edit in flight is for the previous event
  const r = await newest("render", "POST", "/api/render", ev);
  if (!r) return;
  const rules = $("rules");
  rules.replaceChildren();
  if (r.status !== 200) {
    showErrors([`${r.json.error}: ${r.json.detail}`]);
    return;
  }
  for (const x of r.json.rules) {
    const li = document.createElement("li");
    li.className = x.matched ? "matched" : "muted";
    li.textContent = x.matched ? `✔ ${x.rule}` : `✘ ${x.rule}: ${x.reason}`;
    rules.appendChild(li);
  }
  state.cards = r.json.cards;
  const names = [...new Set(state.cards.map((c) => c.rule))];
  const keep = $("rule").value;
  $("rule").replaceChildren(...names.map((n) => option(n, n)));
  if (names.includes(keep)) $("rule").value = keep;
  pickCard();
}

function current() {
  return state.cards.find((x) => x.rule === $("rule").value && x.kind === $("kind").value);
}

function pickCard() {
  const c = current();
  $("save").disabled = !state.write || !c;
  $("saved").textContent = state.write ? "" : "saving is off (playground.write)";
  $("template").value = c?.template_source ?? "";
  $("template-name").textContent = c?.template_file
    ? `${c.template_file.file} — ${c.template_file.save}`
    : c ? c.template : "no rule matches";
  showCard(c);
}

// The template was edited: render it instead of the loaded one.
const onTemplate = debounce(async () => {
  const ev = pickedEvent();
  if (typeof ev === "string" || !$("rule").value) return;
  const r = await newest("card", "POST", "/api/render", {
    ...ev,
    rule: $("rule").value,
    kind: $("kind").value,
    template: $("template").value,
  });
  if (!r) return;
  if (r.status !== 200) {
    showErrors([`${r.json.error}: ${r.json.detail}`]);
    return;
  }
  showCard(r.json.cards[0]);
}, 250);

// The card JSON was edited: preview it as it stands.
const onCard = debounce(() => {
  let body;
  try {
    body = JSON.parse($("card").value);
  } catch (e) {
    showErrors([`the card is not JSON: ${e.message}`]);
    return;
  }
  showPreview($("kind").value, body);
}, 250);

async function send() {
  const out = $("outcome");
  let body;
  try {
    body = JSON.parse($("card").value);
  } catch (e) {
    out.textContent = `Not sent: the card is not JSON (${e.message})`;
    return;
  }
  const r = await api("POST", "/api/send", { connection: $("connection").value, body });
  if (r.status !== 202) {
    out.textContent = `Not sent: ${r.json.detail}`;
    return;
  }
  out.textContent = `Queued as ${r.json.delivery}…`;
  for (let i = 0; i < 120; i++) {
    await new Promise((ok) => setTimeout(ok, 500));
    const d = await api("GET", `/api/deliveries/${r.json.delivery}`);
    if (d.status !== 200) continue;
    if (d.json.state === "delivered") {
      out.textContent = `Delivered (${r.json.delivery})`;
      return;
    }
    if (d.json.state === "dead") {
      out.textContent = `Not delivered: ${d.json.reason ?? d.json.last_error}`;
      return;
    }
    out.textContent = `${d.json.state} (${d.json.attempts ?? 0} attempts)…`;
  }
}

async function save() {
  const c = current();
  if (!c) return;
  $("saved").textContent = "saving…";
  const r = await api("PUT", "/api/templates", { template: c.template, kind: c.kind, text: $("template").value });
  if (r.status === 200) {
    $("saved").textContent = `saved to ${r.json.saved} and reloaded`;
    c.template_source = $("template").value;
  } else {
    $("saved").textContent = `not saved: ${r.json.detail}`;
  }
}

async function start() {
  const [s, recent, cons] = await Promise.all([
    api("GET", "/api/samples"),
    api("GET", "/api/events/recent"),
    api("GET", "/api/connections"),
  ]);
  state.samples = s.json.samples || [];
  state.write = Boolean(s.json.write);
  state.recent = recent.json.events || [];
  state.connections = Array.isArray(cons.json) ? cons.json : [];
  $("source").replaceChildren(
    ...(s.json.sources || []).map((x) => {
      const o = option(x.name, `${x.name} (${x.kind})`);
      o.dataset.kind = x.kind;
      return o;
    }),
  );
  const fixtures = document.createElement("optgroup");
  fixtures.label = "Shipped fixtures";
  state.samples.forEach((x, i) => fixtures.appendChild(option(`sample:${i}`, x.name)));
  const received = document.createElement("optgroup");
  received.label = "Received lately";
  state.recent.forEach((x, i) =>
    received.appendChild(option(`recent:${i}`, `${x.source} ${x.event} (${new Date(x.received_ms).toLocaleString()})`)),
  );
  $("event").replaceChildren(fixtures, received, option("pasted", "Pasted JSON…"));
  $("connection").replaceChildren(
    ...state.connections.map((c) => option(c.id, `${c.name || c.group_name || c.id} (${c.kind})`)),
  );
  $("event").addEventListener("change", () => {
    $("pasted").hidden = $("event").value !== "pasted";
    renderAll();
  });
  for (const id of ["payload", "event-type", "source"]) $(id).addEventListener("input", debounce(renderAll, 300));
  $("rule").addEventListener("change", pickCard);
  $("kind").addEventListener("change", pickCard);
  $("template").addEventListener("input", onTemplate);
  $("card").addEventListener("input", onCard);
  $("send").addEventListener("click", send);
  $("save").addEventListener("click", save);
  renderAll();
}

// The live tail: what cardwire receives, matches, queues and delivers, newest first.
function tail() {
  const list = $("live");
  const es = new EventSource("/api/stream");
  const describe = {
    received: (n) => `received ${n.source} ${n.event_type}${n.action ? ` (${n.action})` : ""} as ${n.event}`,
    matched: (n) => `${n.event} matched ${n.rule}`,
    queued: (n) => `${n.rule}: card ${n.delivery} queued for ${n.connection}`,
    delivered: (n) => `${n.delivery} delivered to ${n.connection} (HTTP ${n.status})`,
    retrying: (n) => `${n.delivery} to ${n.connection} will be retried: ${n.result}`,
    dead: (n) => `${n.delivery} to ${n.connection} failed for good: ${n.result}`,
  };
  for (const [kind, text] of Object.entries(describe)) {
    es.addEventListener(kind, (m) => {
      const li = document.createElement("li");
      li.className = `live-${kind}`;
      li.textContent = `${new Date().toLocaleTimeString()} ${text(JSON.parse(m.data))}`;
      list.prepend(li);
      while (list.children.length > 50) list.lastChild.remove();
    });
  }
  es.addEventListener("lagged", (m) => {
    const li = document.createElement("li");
    li.textContent = `(${m.data} notices missed)`;
    list.prepend(li);
  });
}

start();
tail();
