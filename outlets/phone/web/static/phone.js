// The phone page: this browser as an lsl-session phone (docs/phone-web.md).
// It speaks the relay protocol (docs/phone-protocol.md) over a WebSocket: one
// message per protocol frame, JSON as text, binary frames ("B" + header + body).
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
const DEVICE = params.get("device") || "";
const TOKEN = params.get("token") || "";
const CAPABILITIES = ["motion_data", "orientation_data", "rgb_video"];
const CHUNK = 128 * 1024;          // upload chunk bytes
const KEEP_S = 60;                 // rows kept for a resend after a reconnect
const BATCH_MS = 100;              // sample batches
const STREAMS = { motion: 6, orientation: 3, rgb_frames: 1 };

// the phone clock: seconds on the page's monotonic high-resolution clock
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const atStamp = (ms) => (performance.timeOrigin + ms) / 1000;

const state = {
  ws: null, started: false, connected: false, welcome: null, backoff: 0.5,
  nextId: 1, seq: 0, bestRtt: null, exchanges: 0, recording: false,
  sessionId: null, frameIndex: 0, paused: false, lastRx: 0,
  pending: { motion: [], orientation: [], rgb_frames: [] },
  kept: { motion: [], orientation: [], rgb_frames: [] },
  counts: { motion: 0, orientation: 0, rgb_frames: 0, events: 0 },
  camera: null, recorder: null, chunks: [], upload: null, waiting: new Map(),
  frameTimeSource: null, wakeLock: null, timers: [], lastFrame: null,
};
window.lslPhone = state;  // for the tests and the curious

const $ = (id) => document.getElementById(id);
const show = (id, text) => { $(id).textContent = text; };

// ------------------------------------------------------------------ transport
function sendJson(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(message));
  }
}

function binaryFrame(header, body) {
  const head = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(5 + head.length + body.byteLength);
  out[0] = 0x42; // "B"
  new DataView(out.buffer).setUint32(1, head.length, false);
  out.set(head, 5);
  out.set(new Uint8Array(body), 5 + head.length);
  return out;
}

function request(message) {
  const id = state.nextId++;
  sendJson({ ...message, id });
  return new Promise((resolve) => state.waiting.set(id, resolve));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  show("connection", "connecting…");
  ws.onopen = () => {
    sendJson({
      type: "hello", id: state.nextId++, protocol: 1, device_id: DEVICE, token: TOKEN,
      capabilities: CAPABILITIES, model: navigator.userAgent.slice(0, 64),
      manufacturer: "web browser", app_version: "lsl-session-web 1",
    });
  };
  ws.onmessage = (event) => {
    state.lastRx = now();
    if (typeof event.data === "string") handle(JSON.parse(event.data));
  };
  ws.onclose = () => {
    state.connected = false;
    state.timers.forEach(clearInterval);
    state.timers = [];
    show("connection", `disconnected; retrying in ${state.backoff.toFixed(1)} s`);
    setTimeout(connect, state.backoff * 1000);
    state.backoff = Math.min(10, state.backoff * 2);
  };
}

// ------------------------------------------------------------------ messages
function handle(msg) {
  if (msg.type === "sync_resp") {
    const t4 = now();  // first: every microsecond here is clock error
    sendJson({ type: "sync_done", seq: msg.seq, t1: msg.t1, t4 });
    const rtt = (t4 - msg.t1) - (msg.t3 - msg.t2);
    state.exchanges += 1;
    state.bestRtt = state.bestRtt === null ? rtt : Math.min(state.bestRtt, rtt);
    return;
  }
  if (msg.re !== undefined && state.waiting.has(msg.re)) {
    state.waiting.get(msg.re)(msg);
    state.waiting.delete(msg.re);
  }
  switch (msg.type) {
    case "welcome": return welcome(msg);
    case "start_record": return startRecord(msg);
    case "stop_record": return stopRecord(msg);
    case "sync_flash": return flash(msg);
    case "marker":
      event(msg.label, now());
      return sendJson({ type: "ack", re: msg.id, status: "ok", t: now() });
    case "error":
      show("connection", `error ${msg.code}: ${msg.message}`);
      return undefined;
    default: return undefined;
  }
}

function welcome(msg) {
  state.welcome = msg;
  state.connected = true;
  state.backoff = 0.5;
  state.bestRtt = null;
  show("connection", `connected (${msg.streams.join(", ")})`);
  const sync = msg.sync;
  syncBurst(sync.initial_burst, sync.initial_spacing_ms ?? sync.spacing_ms);
  state.timers.push(setInterval(() => syncBurst(sync.burst, sync.spacing_ms),
                                sync.interval_s * 1000));
  state.timers.push(setInterval(() => sendJson({
    type: "heartbeat", t: now(), recording: state.recording }),
  msg.heartbeat_interval_s * 1000));
  state.timers.push(setInterval(flushBatches, BATCH_MS));
  state.timers.push(setInterval(render, 500));
  // after a reconnect: resend what the relay has not pushed yet
  for (const [stream, rows] of Object.entries(state.kept)) {
    const last = (msg.resume || {})[stream];
    const again = rows.filter((r) => last === undefined || last === null || r[0] > last);
    state.pending[stream] = again.concat(state.pending[stream]);
  }
  if (state.upload) upload(state.upload);
}

function syncBurst(n, spacingMs) {
  for (let i = 0; i < n; i += 1) {
    setTimeout(() => {
      state.seq += 1;
      sendJson({ type: "sync_req", seq: state.seq, t1: now() });
    }, i * spacingMs);
  }
}

// ------------------------------------------------------------------- samples
function push(stream, row) {
  if (state.paused) return;
  state.pending[stream].push(row);
}

function flushBatches() {
  if (!state.connected) return;
  const oldest = now() - KEEP_S;
  for (const [stream, channels] of Object.entries(STREAMS)) {
    const rows = state.pending[stream];
    if (!rows.length || !state.welcome.streams.includes(stream)) continue;
    state.pending[stream] = [];
    const body = new ArrayBuffer(rows.length * (1 + channels) * 8);
    const view = new DataView(body);
    rows.forEach((row, i) => {
      for (let k = 0; k <= channels; k += 1) {
        view.setFloat64((i * (1 + channels) + k) * 8, row[k] ?? NaN, false);
      }
    });
    state.ws.send(binaryFrame({ type: "samples", stream, n: rows.length, channels }, body));
    state.counts[stream] += rows.length;
    const kept = state.kept[stream].concat(rows);
    state.kept[stream] = kept.filter((r) => r[0] >= oldest);
  }
}

function event(label, t, pulse) {
  state.counts.events += 1;
  const msg = { type: "event", t, label };
  if (Number.isInteger(pulse) && pulse >= 0) msg.pulse = pulse;  // the lab's pulse id
  sendJson(msg);
}

const rad = (deg) => (deg === null || deg === undefined ? NaN : deg * Math.PI / 180);

function onMotion(e) {
  const g = e.accelerationIncludingGravity || {};
  const r = e.rotationRate || {};
  // rotationRate is deg/s; Chromium fills alpha, beta, gamma from the gyroscope's
  // x, y, z (docs/phone-web.md); the stream is rad/s about x, y, z
  push("motion", [atStamp(e.timeStamp), g.x, g.y, g.z, rad(r.alpha), rad(r.beta), rad(r.gamma)]);
}

function onOrientation(e) {
  push("orientation", [atStamp(e.timeStamp), e.alpha, e.beta, e.gamma]);
}

// --------------------------------------------------------------------- video
function frameTime(meta) {
  // captureTime (camera sources in Chromium) is when the sensor took the frame;
  // else receiveTime, else the presentation time (a frame or so later)
  for (const key of ["captureTime", "receiveTime", "presentationTime"]) {
    if (typeof meta[key] === "number" && meta[key] > 0) {
      state.frameTimeSource = key;
      return atStamp(meta[key]);
    }
  }
  state.frameTimeSource = "callback";
  return now();
}

function onFrame(_now, meta) {
  const t = frameTime(meta);
  if (state.recording) {
    // a busy page can miss callbacks of frames that were presented (and recorded):
    // presentedFrames counts them, so number them too, their times interpolated
    const skipped = state.lastFrame ? meta.presentedFrames - state.lastFrame.n - 1 : 0;
    for (let k = 1; k <= skipped && k < 30; k += 1) {
      const tk = state.lastFrame.t + (t - state.lastFrame.t) * k / (skipped + 1);
      push("rgb_frames", [tk, state.frameIndex++]);
    }
    push("rgb_frames", [t, state.frameIndex++]);
  }
  state.lastFrame = state.recording ? { n: meta.presentedFrames, t } : null;
  $("camera").requestVideoFrameCallback(onFrame);
}

function recorderType() {
  for (const type of ["video/webm;codecs=vp8", "video/webm", "video/mp4"]) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

async function startRecord(msg) {
  state.sessionId = msg.session_id;
  state.frameIndex = 0;
  if (state.camera) {
    state.chunks = [];
    state.recorder = new MediaRecorder(state.camera, { mimeType: recorderType() });
    state.recorder.ondataavailable = (e) => { if (e.data.size) state.chunks.push(e.data); };
    state.recorder.start(1000);
  }
  state.recording = true;
  await keepAwake();
  sendJson({ type: "ack", re: msg.id, status: "ok", t: now() });
}

async function stopRecord(msg) {
  state.recording = false;
  const t = now();
  sendJson({ type: "ack", re: msg.id, status: "ok", t });
  if (state.wakeLock) { state.wakeLock.release(); state.wakeLock = null; }
  if (!state.recorder) return;
  const recorder = state.recorder;
  state.recorder = null;
  const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
  recorder.stop();
  await stopped;
  const type = recorder.mimeType || "video/webm";
  const blob = new Blob(state.chunks, { type });
  const bytes = await blob.arrayBuffer();
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  const sha256 = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const ext = type.includes("mp4") ? "mp4" : "webm";
  upload({ bytes, sha256, name: `rgb_video.${ext}`, file_type: "rgb" });
}

async function upload(file) {
  state.upload = file;
  show("upload", `offering ${file.name} (${file.bytes.byteLength} bytes)`);
  const ready = await request({
    type: "upload_offer", name: file.name, size: file.bytes.byteLength,
    sha256: file.sha256, file_type: file.file_type,
  });
  if (ready.type === "error") { show("upload", `refused: ${ready.code}`); state.upload = null; return; }
  if (!ready.done) {
    for (let offset = ready.have; offset < file.bytes.byteLength; offset += CHUNK) {
      while (state.ws.bufferedAmount > 4 * CHUNK) await new Promise((r) => setTimeout(r, 10));
      if (state.ws.readyState !== WebSocket.OPEN) return;  // resumed after the reconnect
      const body = file.bytes.slice(offset, offset + CHUNK);
      state.ws.send(binaryFrame({ type: "upload_chunk", upload_id: ready.upload_id, offset }, body));
      show("upload", `${file.name}: ${Math.min(offset + CHUNK, file.bytes.byteLength)} bytes sent`);
    }
    const done = await request({ type: "upload_end", upload_id: ready.upload_id });
    show("upload", done.type === "upload_done" ? `stored ${done.file_path}` : `failed: ${done.code}`);
  } else {
    show("upload", `stored ${ready.file_path}`);
  }
  state.upload = null;
}

// ------------------------------------------------------------- flash and UI
function flash(msg) {
  // at `msg.at` (this page's clock) if it is still ahead, else at once; the
  // event echoes the lab's pulse id (docs/phone-protocol.md §11)
  const wait = typeof msg.at === "number" ? (msg.at - now()) * 1000 : 0;
  setTimeout(() => {
    const div = $("flash");
    div.hidden = false;
    requestAnimationFrame((ts) => {
      const t = atStamp(ts);  // the frame in which the white screen is drawn
      event(Number.isInteger(msg.pulse) ? "sync_flash" : "sync_pulse", t, msg.pulse);
      sendJson({ type: "ack", re: msg.id, status: "ok", t });
      setTimeout(() => { div.hidden = true; }, msg.duration_ms || 100);
    });
  }, Math.min(Math.max(wait, 0), 10000));
}

async function keepAwake() {
  if (!navigator.wakeLock || document.visibilityState !== "visible") return;
  try {
    state.wakeLock = await navigator.wakeLock.request("screen");
  } catch (err) {
    state.wakeLock = null;  // e.g. battery saver: the page still works
  }
}

function onVisibility() {
  const hidden = document.visibilityState !== "visible";
  if (hidden === state.paused) return;
  state.paused = hidden;
  event(hidden ? "paused" : "resumed", now());
  if (!hidden && state.recording) keepAwake();
}

function render() {
  show("sync", state.bestRtt === null ? "–"
    : `best round trip ${(state.bestRtt * 1e3).toFixed(2)} ms, ${state.exchanges} exchanges`);
  show("recording", state.recording ? `yes (${state.sessionId || "no session"})` : "no");
  show("counts", Object.entries(state.counts).map(([k, v]) => `${k} ${v}`).join(", "));
}

async function start() {
  $("start").disabled = true;
  state.started = true;
  // iOS asks for motion permission only from a user gesture like this one
  if (typeof DeviceMotionEvent !== "undefined" && DeviceMotionEvent.requestPermission) {
    try { await DeviceMotionEvent.requestPermission(); } catch (err) { /* denied */ }
  }
  if (typeof DeviceOrientationEvent !== "undefined" && DeviceOrientationEvent.requestPermission) {
    try { await DeviceOrientationEvent.requestPermission(); } catch (err) { /* denied */ }
  }
  window.addEventListener("devicemotion", onMotion);
  window.addEventListener("deviceorientation", onOrientation);
  document.addEventListener("visibilitychange", onVisibility);
  if (navigator.mediaDevices) {
    try {
      state.camera = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
      const video = $("camera");
      video.srcObject = state.camera;
      video.requestVideoFrameCallback(onFrame);
    } catch (err) {
      show("upload", `no camera: ${err.name}`);
    }
  } else {
    show("upload", "no camera: this page needs HTTPS (accept the certificate)");
  }
  $("tap").disabled = false;
  connect();
}

show("device", DEVICE || "(no device id: open the pairing link)");
$("start").addEventListener("click", start);
$("tap").addEventListener("click", () => event("tap", now()));
