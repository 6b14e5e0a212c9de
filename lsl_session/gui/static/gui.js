// The control room page: polls the JSON API, sends actions with the CSRF token.
// Every text from a stream (name, type, label, marker, device id) goes in with
// textContent, never as HTML.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
let CSRF = null;
let viewed = null; // stream_id shown in the viewer
let fieldsDirty = false;

function api(path) {
  return TOKEN ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : path;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function say(text, isError) {
  const m = document.getElementById("message");
  m.textContent = text || "";
  m.style.color = isError ? "#ff9a8a" : "#ffd479";
}

async function post(path, body) {
  const r = await fetch(api(path), {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body || {}),
  });
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) { say(data.error || `HTTP ${r.status}`, true); throw new Error(data.error); }
  return data;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function fmtTime(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

// Rows are kept per key and updated in place, so a click never meets a row
// that a poll has just replaced.
function syncRows(tbody, items, key, build, update) {
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    let tr = old.get(k);
    if (tr) old.delete(k); else { tr = build(item); tr.dataset.key = k; }
    update(tr, item);
    const next = prev ? prev.nextSibling : tbody.firstChild;
    if (tr !== next) tbody.insertBefore(tr, next);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

function cells(tr, n) { while (tr.children.length < n) tr.appendChild(el("td")); return tr.children; }

let selecting = 0; // select requests in flight: the boxes are the user's meanwhile

function renderStreams(state) {
  syncRows(document.querySelector("#streams tbody"), state.streams, (s) => s.uid, () => {
    const tr = el("tr");
    const box = el("input"); box.type = "checkbox"; box.className = "pick";
    const c = cells(tr, 6); c[0].appendChild(box);
    return tr;
  }, (tr, s) => {
    tr.title = `source_id: ${s.source_id}`;
    const c = cells(tr, 6);
    const box = c[0].firstChild;
    box.disabled = !s.query; box.dataset.query = s.query || "";
    if (!selecting) box.checked = s.selected;
    c[1].textContent = s.name;
    if (s.required) c[1].appendChild(el("span", " ★", "req"));
    c[2].textContent = s.type;
    c[3].textContent = s.hostname;
    if (s.same_name_hosts > 1) {
      c[3].appendChild(el("span", ` ⚠ same name on ${s.same_name_hosts} hosts`, "dup"));
    }
    c[4].textContent = s.channel_count;
    c[5].textContent = s.nominal_srate ? `${s.nominal_srate} Hz` : "irregular";
  });
  const sel = document.getElementById("selection");
  clear(sel);
  if (state.selection.length) {
    sel.appendChild(el("b", "Recording: "));
    state.selection.forEach((q, i) => sel.appendChild(el("code", `${i ? " · " : ""}${q}`)));
  } else {
    sel.appendChild(el("span", "Nothing selected: Start records every visible stream."));
  }
  const req = document.getElementById("required");
  clear(req);
  if (state.required.length) {
    req.appendChild(el("b", "Required: "));
    for (const r of state.required) {
      req.appendChild(el("span", r.present ? `${r.label} ✓ ` : `${r.label} missing `,
        r.present ? "req" : "missing"));
    }
  }
}

function renderFields(state) {
  if (fieldsDirty) return;
  const form = document.getElementById("fields");
  for (const [k, v] of Object.entries(state.fields)) {
    const input = form.elements.namedItem(k);
    if (input && document.activeElement !== input) input.value = v;
  }
  document.getElementById("preview").textContent = state.preview || "";
}

function renderLive(live) {
  const badge = document.getElementById("state");
  badge.textContent = live.recording ? "recording" : live.state;
  badge.className = `badge ${live.recording ? "recording" : live.state}`;
  document.getElementById("elapsed").textContent = live.recording ? fmtTime(live.elapsed_s) : "–";
  document.getElementById("filesize").textContent = fmtBytes(live.bytes);
  document.getElementById("diskfree").textContent = fmtBytes(live.disk_free);
  document.getElementById("timeleft").textContent = live.time_left_s ? fmtTime(live.time_left_s) : "–";
  syncRows(document.querySelector("#live tbody"), live.streams || [], (s) => s.stream_id, (s) => {
    const tr = el("tr");
    const a = el("a"); a.href = "#"; a.dataset.stream = s.stream_id;
    a.addEventListener("click", (ev) => { ev.preventDefault(); viewed = s.stream_id; pollTrace(); });
    cells(tr, 6)[0].appendChild(a);
    return tr;
  }, (tr, s) => {
    const c = cells(tr, 6);
    c[0].firstChild.textContent = s.name;
    c[1].textContent = s.state; c[1].className = `state-${s.state}`;
    c[2].textContent = s.effective_srate ? `${s.effective_srate.toFixed(1)} Hz` : "–";
    c[3].textContent = s.samples;
    c[4].textContent = s.gaps;
    c[5].textContent = s.lag_s === null || s.lag_s === undefined ? "–" : `${(s.lag_s * 1000).toFixed(0)} ms`;
  });
  if (viewed !== null && !(live.streams || []).some((s) => s.stream_id === viewed)) {
    viewed = null; document.getElementById("viewer").hidden = true;
  }
  const dev = document.getElementById("devices"); clear(dev);
  for (const d of live.devices || []) dev.appendChild(el("li", `${d.device_id} (${d.type}): ${d.status}`));
  const warn = document.getElementById("warnings"); clear(warn);
  for (const w of live.warnings || []) warn.appendChild(el("li", w, "missing"));
}

async function pollState() {
  try {
    const r = await fetch(api("/api/state"));
    const state = await r.json();
    if (!r.ok) { say(state.error, true); return; }
    renderStreams(state); renderFields(state); renderLive(state.live);
  } catch (e) { say("the recorder does not answer", true); }
}

function drawTrace(tr) {
  const c = document.getElementById("trace");
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!tr || !tr.channels.length) return;
  const want = Math.max(160, tr.channels.length * 44);
  if (c.height !== want) c.height = want;
  const n = tr.channels.length, h = c.height / n, left = 150;
  const t0 = tr.t[0], t1 = tr.t[tr.t.length - 1] || 0, span = (t1 - t0) || 1;
  g.font = "11px system-ui"; g.fillStyle = "#1d2330";
  tr.channels.forEach((ch, i) => {
    const top = i * h, lo = ch.min, hi = ch.max, range = (hi - lo) || 1;
    g.fillStyle = "#1d2330";
    g.fillText(`${ch.label}${ch.unit ? ` [${ch.unit}]` : ""}`, 4, top + 12);
    g.fillStyle = "#667";
    g.fillText(`${hi.toPrecision(4)} … ${lo.toPrecision(4)}`, 4, top + 24);
    g.strokeStyle = "#2459a6"; g.beginPath();
    let pen = false;
    ch.values.forEach((v, k) => {
      if (v === null) { pen = false; return; } // a gap stays a gap
      const x = left + ((tr.t[k] - t0) / span) * (c.width - left - 4);
      const y = top + h - 4 - ((v - lo) / range) * (h - 8);
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true;
    });
    g.stroke();
  });
}

async function pollTrace() {
  if (viewed === null) return;
  const sel = document.getElementById("channel-window");
  const first = sel.value || 0;
  const r = await fetch(api(`/api/trace?stream=${viewed}&first=${first}`));
  const data = await r.json();
  const tr = data.trace;
  document.getElementById("viewer").hidden = false;
  const row = [...document.querySelectorAll("#live a")].find((a) => a.dataset.stream == viewed);
  document.getElementById("viewer-name").textContent = row ? row.textContent : "";
  if (tr) {
    const windows = Math.ceil(tr.channel_count / 16);
    if (sel.options.length !== windows) {
      clear(sel);
      for (let w = 0; w < windows; w++) {
        const o = el("option", `channels ${w * 16 + 1}–${Math.min((w + 1) * 16, tr.channel_count)}`);
        o.value = w * 16; sel.appendChild(o);
      }
    }
  }
  drawTrace(tr);
}

function renderSessions(data) {
  syncRows(document.querySelector("#sessions tbody"), data.sessions, (s) => s.session_id, (s) => {
    const tr = el("tr");
    const act = cells(tr, 7)[6];
    const a = el("a", "report"); a.target = "_blank"; a.rel = "noopener"; a.className = "report";
    a.href = api(`/report/${encodeURIComponent(s.session_id)}`);
    act.appendChild(a);
    for (const [kind, label] of [["process", "Process"], ["bids", "Export BIDS"], ["recover", "Recover"]]) {
      const b = el("button", label); b.type = "button"; b.dataset.kind = kind;
      b.addEventListener("click", () => post("/api/job", { kind, session_id: s.session_id })
        .then(() => { say(`${label}: ${s.session_id} started`); pollSessions(); }).catch(() => {}));
      act.appendChild(b);
    }
    return tr;
  }, (tr, s) => {
    const c = cells(tr, 7);
    c[0].textContent = s.where ? `${s.where}/${s.session_id}` : s.session_id;
    c[1].textContent = (s.start_time || "").replace("T", " ").slice(0, 19);
    c[2].textContent = s.duration_s ? fmtTime(s.duration_s) : "–";
    c[3].textContent = fmtBytes(s.bytes);
    c[4].textContent = s.status;
    const busy = ["recording", "active", "processing", "creating"].includes(s.status);
    c[5].textContent = busy ? "–" : (s.verdict || []).join(" ");
    c[6].querySelector("a.report").hidden = !s.has_report;
  });
  const jobs = document.getElementById("jobs"); clear(jobs);
  for (const j of data.jobs) {
    jobs.appendChild(el("li", `${j.kind} ${j.session_id}: ${j.state} (${j.elapsed_s} s) ${j.last_line}`,
      j.state === "failed" ? "missing" : ""));
  }
}

async function pollSessions() {
  try {
    const r = await fetch(api("/api/sessions"));
    if (r.ok) renderSessions(await r.json());
  } catch (e) { /* shown by pollState */ }
}

function fieldValues() {
  const form = document.getElementById("fields");
  const out = {};
  for (const k of ["root", "participant", "session", "task", "acquisition", "modality", "template"]) {
    out[k] = form.elements.namedItem(k).value;
  }
  out.run = parseInt(form.elements.namedItem("run").value, 10) || 1;
  return out;
}

async function init() {
  const hello = await (await fetch(api("/api/hello"))).json();
  CSRF = hello.csrf;
  if (hello.rcs) document.getElementById("rcs").textContent = `RCS port ${hello.rcs[1]}`;
  const markers = document.getElementById("markers");
  for (const label of hello.marker_buttons) {
    const b = el("button", label); b.type = "button"; b.className = "marker";
    b.addEventListener("click", () => post("/api/note", { text: label, kind: "marker" })
      .then(() => say(`marker ${label} sent`)).catch(() => {}));
    markers.appendChild(b);
  }
  document.getElementById("update").addEventListener("click", () =>
    post("/api/update").then(pollState).catch(() => {}));
  document.querySelector("#streams tbody").addEventListener("change", () => {
    const queries = [...document.querySelectorAll("#streams input.pick:checked")].map((b) => b.dataset.query);
    selecting++;
    post("/api/select", { queries }).then((d) => say(d.warnings.length ? d.warnings.join("; ") : `${queries.length} stream(s) selected`, d.warnings.length > 0))
      .catch(() => {}).finally(() => { selecting--; pollState(); });
  });
  document.getElementById("query-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = document.getElementById("query").value.trim();
    if (!q) return;
    const current = [...document.querySelectorAll("#streams input.pick:checked")].map((b) => b.dataset.query);
    post("/api/select", { queries: [...current, q] })
      .then((d) => say(d.warnings.length ? d.warnings.join("; ") : `selected ${q}`, d.warnings.length > 0))
      .catch(() => {});
  });
  const form = document.getElementById("fields");
  form.addEventListener("input", () => { fieldsDirty = true; });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    post("/api/fields", fieldValues()).then(() => { fieldsDirty = false; say("fields saved"); pollState(); })
      .catch(() => {});
  });
  document.getElementById("bids-template").addEventListener("click", () => {
    form.elements.namedItem("template").value = "sub-%p/ses-%s/%m/sub-%p_ses-%s_task-%b[_acq-%a]_run-%r_%m.xdf";
    fieldsDirty = true;
  });
  const act = (path, done) => () => {
    const save = fieldsDirty ? post("/api/fields", fieldValues()).then(() => { fieldsDirty = false; }) : Promise.resolve();
    save.then(() => post(path)).then((d) => { say(done(d)); pollState(); pollSessions(); }).catch(() => {});
  };
  document.getElementById("start").addEventListener("click", act("/api/start", () => "recording"));
  document.getElementById("stop").addEventListener("click", act("/api/stop", () => "stopped; the run number moved on"));
  document.getElementById("split").addEventListener("click", act("/api/split", (d) => `now writing ${d.file}`));
  document.getElementById("note-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("note");
    post("/api/note", { text: input.value, kind: "note" })
      .then(() => { say("note added"); input.value = ""; }).catch(() => {});
  });
  document.getElementById("channel-window").addEventListener("change", pollTrace);
  pollState(); pollSessions();
  setInterval(pollState, 1000);
  setInterval(pollTrace, 1000);
  setInterval(pollSessions, 3000);
}

init().catch((e) => say(`cannot reach the recorder: ${e}`, true));
