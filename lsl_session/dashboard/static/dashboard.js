// Live dashboard: renders the recorder's snapshots from the /events SSE feed.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const suffix = token ? "?token=" + encodeURIComponent(token) : "";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? value.toFixed(digits) : String(value);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  return n >= 1e9 ? (n / 1e9).toFixed(2) + " GB" : (n / 1e6).toFixed(2) + " MB";
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function drawTrace(canvas, trace) {
  const ctx = canvas.getContext("2d");
  const w = (canvas.width = 220), h = (canvas.height = 36);
  ctx.clearRect(0, 0, w, h);
  if (!trace || !trace.t.length) return;
  const t0 = trace.t[0], t1 = trace.t[trace.t.length - 1];
  trace.channels.forEach((ys, k) => {
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (hi === lo) { hi += 1; lo -= 1; }
    ctx.strokeStyle = COLORS[k % COLORS.length];
    ctx.beginPath();
    ys.forEach((y, i) => {
      const x = t1 > t0 ? ((trace.t[i] - t0) / (t1 - t0)) * (w - 2) + 1 : 1;
      const py = h - 2 - ((y - lo) / (hi - lo)) * (h - 4);
      if (i === 0) ctx.moveTo(x, py); else ctx.lineTo(x, py);
    });
    ctx.stroke();
  });
}

function renderStreams(snapshot) {
  const body = document.querySelector("#streams tbody");
  const seen = new Set();
  for (const s of snapshot.streams) {
    const key = String(s.stream_id);
    seen.add(key);
    let row = body.querySelector(`tr[data-id="${key}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.id = key;
      body.appendChild(row);
    }
    row.dataset.stream = s.name;
    row.dataset.state = s.state;
    row.replaceChildren();
    cell(row, s.name, "name");
    cell(row, s.type);
    cell(row, s.state, "state state-" + s.state);
    cell(row, s.nominal_srate > 0 ? fmt(s.nominal_srate, 1) : "irregular");
    cell(row, fmt(s.effective_srate, 1));
    cell(row, String(s.samples), "samples");
    cell(row, String(s.gaps));
    cell(row, fmt(s.lag_s, 3));
    cell(row, fmt(s.last_sample_age_s, 1));
    cell(row, s.clock_offset === null ? "–" : (s.clock_offset * 1e3).toFixed(3));
    cell(row, fmt(s.clock_offset_spread_ms, 3));
    const td = cell(row, "");
    const canvas = document.createElement("canvas");
    td.appendChild(canvas);
    drawTrace(canvas, snapshot.traces[key]);
  }
  for (const row of [...body.rows]) if (!seen.has(row.dataset.id)) row.remove();
}

function renderList(selector, items, text) {
  const list = document.querySelector(selector);
  list.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.textContent = text(item);
    return li;
  }));
}

function render(snapshot) {
  document.getElementById("session").textContent = snapshot.session_id || "(no session)";
  document.getElementById("elapsed").textContent =
    snapshot.elapsed_s === null ? "–" : fmt(snapshot.elapsed_s, 1) + " s";
  document.getElementById("bytes").textContent = bytes(snapshot.bytes);
  document.getElementById("disk").textContent = bytes(snapshot.disk_free);
  renderStreams(snapshot);
  renderList("#devices", snapshot.devices, (d) => `${d.device_id} (${d.type}): ${d.status}`);
  renderList("#events", [...snapshot.events].reverse(),
    (e) => `${e.time || ""}  ${e.text || (e.event + "  " + e.details)}`);
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...snapshot.warnings.map((w) => {
    const div = document.createElement("div");
    div.textContent = w;
    return div;
  }));
}

function connect() {
  const status = document.getElementById("connection");
  const feed = new EventSource("events" + suffix);
  feed.onopen = () => { status.textContent = "live"; status.className = "good"; };
  feed.onmessage = (msg) => render(JSON.parse(msg.data));
  feed.onerror = () => { status.textContent = "disconnected (retrying)"; status.className = "bad"; };
}

connect();
