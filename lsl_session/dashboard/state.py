"""What the dashboard shows, built from the recorder's status and pulled chunks.

The dashboard never opens an inlet of its own: traces come from the chunks the
recorder already pulled (a tap on its output), figures from `Recorder.status()`.
Every buffer here has a fixed bound, whatever the streams send.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from lsl_session.channel_checks import INTERNAL_TYPES, MIN_SAMPLES, channel_flags
from lsl_session.report.verdict import device_status_text

#: Channels of a stream drawn as traces.
TRACE_CHANNELS = 4
#: Seconds of trace kept per stream.
TRACE_SECONDS = 10.0
#: Points per channel kept from one pulled chunk, and sent per stream.
POINTS_PER_CHUNK = 32
POINTS_SENT = 300
#: Chunks kept per stream (bounds memory even for a stream with stamps far ahead).
MAX_CHUNKS = 256
#: Events kept for the timeline, and the characters of an event's details shown.
MAX_EVENTS = 100
MAX_DETAIL_CHARS = 200
#: A regular stream with no sample for this long (or five sample periods, if
#: longer) is "silent".
SILENT_SECONDS = 1.5
#: Rate warning: effective rate off nominal by more than this fraction...
RATE_TOLERANCE = 0.05
#: ... once the stream has this many seconds of data.
RATE_MIN_SECONDS = 5.0
#: Clock-offset jump worth a warning (seconds between consecutive offsets).
OFFSET_JUMP_S = 0.005
#: Free disk below which the dashboard warns.
DISK_LOW_BYTES = 1_000_000_000
#: Flat/clipped checks (`lsl_session.channel_checks`): the newest samples kept per
#: stream, and the channels checked (bounds: 2048 × 64 float32 = 512 KiB a stream).
CHECK_ROWS = 2048
CHECK_CHANNELS = 64


def stream_warnings(stream: dict[str, Any], disk_free: int | None = None) -> list[str]:
    """The warnings of one stream's live figures (see the module constants)."""
    out: list[str] = []
    name = stream.get("name", "?")
    if stream.get("state") == "silent":
        out.append(f"{name}: silent for {stream.get('last_sample_age_s') or 0:.1f} s")
    if stream.get("state") == "lost":
        out.append(f"{name}: lost")
    nominal = stream.get("nominal_srate") or 0.0
    effective = stream.get("effective_srate") or 0.0
    span = (stream.get("samples") or 0) / nominal if nominal > 0 else 0.0
    if nominal > 0 and span >= RATE_MIN_SECONDS and effective > 0:
        off = effective / nominal - 1.0
        if abs(off) > RATE_TOLERANCE:
            out.append(
                f"{name}: rate {effective:.1f} Hz is {off * 100:+.0f} % off "
                f"nominal {nominal:g} Hz"
            )
    jump = stream.get("offset_jump_ms")
    if jump is not None and abs(jump) > OFFSET_JUMP_S * 1e3:
        out.append(f"{name}: clock offset jumped {jump:+.1f} ms")
    return out


def _classify(stream: dict[str, Any]) -> str:
    if stream.get("lost"):
        return "lost"
    if not stream.get("samples"):
        return "waiting"
    age = stream.get("last_sample_age_s")
    srate = stream.get("nominal_srate") or 0.0
    if srate > 0 and age is not None and age > max(SILENT_SECONDS, 5.0 / srate):
        return "silent"
    return "ok"


def _decimate(values: np.ndarray, points: int) -> np.ndarray:
    if len(values) <= points:
        return values
    idx = np.linspace(0, len(values) - 1, points).astype(np.int64)
    return values[idx]


#: Error sentences kept for the warnings (the newest).
MAX_ERRORS = 8


def event_sentence(entry: dict[str, Any]) -> str:
    """A session event as a sentence (errors and device changes), else ``""``."""
    event = str(entry.get("event", ""))
    device = entry.get("device_id")
    who = f"{_short(device)}: " if isinstance(device, str) else ""
    if event == "error":
        message = entry.get("message") or entry.get("code") or "error"
        return f"error: {who}{_short(message)}"
    if event in ("device_connected", "device_disconnected") and who:
        what = event.removeprefix("device_")
        again = " again" if entry.get("reconnect") else ""
        return f"{who}{what}{again}"
    return ""


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def _labels(recorder: Any, stream: dict[str, Any]) -> list[str]:
    """The stream's channel labels from its LSL header (``ch<k>`` where none)."""
    try:
        info = recorder.streams[stream["stream_id"]].info
        labels, ch = [], info.desc().child("channels").child("channel")
        while not ch.empty() and len(labels) < CHECK_CHANNELS:
            labels.append(_short(ch.child_value("label"))[:64])
            ch = ch.next_sibling()
    except Exception:  # no header, or not a pylsl info: numbered channels
        labels = []
    return [lab or f"ch{k + 1}" for k, lab in enumerate(labels)]


class LiveState:
    """The dashboard's view of a recording.

    Parameters
    ----------
    recorder : callable
        Returns the running recorder (or None between runs); it must offer
        ``status()`` and a ``taps`` list of ``tap(stream_id, stamps, values)``.
    session : callable | None
        Returns the current session (``session_id``, ``metadata()``, ``logger``).
    """

    def __init__(
        self,
        recorder: Callable[[], Any],
        session: Callable[[], Any] | None = None,
    ) -> None:
        self._recorder = recorder
        self._session = session or (lambda: None)
        self._lock = threading.Lock()
        self._traces: dict[int, collections.deque] = {}
        self._labels: dict[int, list[str]] = {}
        self._events: collections.deque = collections.deque(maxlen=MAX_EVENTS)
        #: the session's error events as sentences, shown with the warnings
        self._errors: collections.deque = collections.deque(maxlen=MAX_ERRORS)
        self._tapped: Any = None
        self._subscribed: Any = None
        self._last_offset: dict[int, float] = {}
        self._jumps: dict[int, float] = {}
        self._started = time.monotonic()
        self._recent: dict[int, np.ndarray] = {}

    # -------------------------------------------------------------- inputs
    def tap(self, stream_id: int, stamps: np.ndarray, values: Any) -> None:
        """Keep a decimated copy of a pulled chunk (called by the recorder)."""
        if not isinstance(values, np.ndarray) or values.ndim != 2 or not len(stamps):
            return
        keep = _decimate(np.arange(len(stamps)), POINTS_PER_CHUNK)
        chunk = (
            np.asarray(stamps, dtype=np.float64)[keep],
            values[keep, :TRACE_CHANNELS].astype(np.float64),
        )
        recent = np.asarray(values[-CHECK_ROWS:, :CHECK_CHANNELS], dtype=np.float32)
        with self._lock:
            kept = self._recent.get(stream_id)
            if kept is not None and kept.shape[1] == recent.shape[1]:
                recent = np.concatenate([kept, recent])[-CHECK_ROWS:]
            self._recent[stream_id] = recent
            trace = self._traces.setdefault(
                stream_id, collections.deque(maxlen=MAX_CHUNKS)
            )
            trace.append(chunk)
            newest = chunk[0][-1]
            while trace and trace[0][0][-1] < newest - TRACE_SECONDS:
                trace.popleft()

    def _on_event(self, entry: dict[str, Any]) -> None:
        details = {
            k: v
            for k, v in entry.items()
            if k not in ("event", "timestamp", "lsl_time")
        }
        sentence = event_sentence(entry)
        self._events.append(
            {
                "time": entry.get("timestamp"),
                "event": _short(entry.get("event", "")),
                "details": _short(details) if details else "",
                "text": sentence,
            }
        )
        if entry.get("event") == "error" and sentence:
            self._errors.append(sentence)

    def refresh(self) -> None:
        """Attach to the current recorder and session (called periodically)."""
        self._attach(self._recorder(), self._session())

    def _attach(self, recorder: Any, session: Any) -> None:
        """Hook the tap into a new recorder and the event feed of a new session."""
        if recorder is not None and recorder is not self._tapped:
            taps = getattr(recorder, "taps", None)
            if taps is not None and self.tap not in taps:
                taps.append(self.tap)
            self._tapped = recorder
            with self._lock:
                self._traces.clear()
                self._recent.clear()
                self._labels.clear()
                self._last_offset.clear()
                self._jumps.clear()
        if session is not None and session is not self._subscribed:
            logger = getattr(session, "logger", None)
            if logger is not None:
                logger.subscribe("entry_added", self._on_event)
            self._subscribed = session

    # -------------------------------------------------------------- output
    def _traces_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._lock:
            items = [(sid, list(chunks)) for sid, chunks in self._traces.items()]
        for sid, chunks in items:
            if not chunks:
                continue
            t = np.concatenate([c[0] for c in chunks])
            v = np.concatenate([c[1] for c in chunks])
            keep = _decimate(np.arange(len(t)), POINTS_SENT)
            t, v = t[keep], v[keep]
            v = np.where(np.isfinite(v), v, 0.0)
            out[str(sid)] = {
                "t": np.round(t - t[-1], 3).tolist(),
                "channels": [np.round(v[:, k], 6).tolist() for k in range(v.shape[1])],
            }
        return out

    def _devices(self, session: Any) -> list[dict[str, Any]]:
        if session is None:
            return []
        try:
            devices = session.metadata().get("devices", {})
        except Exception:
            return []
        return [
            {
                "device_id": _short(device_id),
                "type": _short(info.get("device_type", info.get("type", ""))),
                "status": _short(device_status_text(info)),
            }
            for device_id, info in sorted(devices.items())
        ]

    def _offset_jumps(self, streams: list[dict[str, Any]]) -> None:
        for s in streams:
            offset = s.get("clock_offset")
            sid = s.get("stream_id")
            if offset is None or sid is None:
                continue
            last = self._last_offset.get(sid)
            if last is not None and offset != last:
                self._jumps[sid] = (offset - last) * 1e3
            self._last_offset[sid] = offset
            s["offset_jump_ms"] = self._jumps.get(sid)

    def _channel_flags(self, recorder: Any, streams: list[dict[str, Any]]) -> None:
        """``channel_flags`` per stream: its flat and clipped channels, as text."""
        with self._lock:
            recent = dict(self._recent)
        for s in streams:
            values = recent.get(s.get("stream_id"))
            internal = str(s.get("type") or "").strip().lower() in INTERNAL_TYPES
            if values is None or len(values) < MIN_SAMPLES or internal:
                continue
            labels = self._labels.get(s["stream_id"])
            if labels is None:
                labels = self._labels[s["stream_id"]] = _labels(recorder, s)
            s["channel_flags"] = [
                f.text(
                    labels[f.channel]
                    if f.channel < len(labels)
                    else f"ch{f.channel + 1}"
                )
                for f in channel_flags(values)
            ]

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as one JSON-serialisable dict."""
        recorder = self._recorder()
        session = self._session()
        self._attach(recorder, session)
        status = recorder.status() if recorder is not None else {}
        streams = [dict(s) for s in status.get("streams", [])]
        for s in streams:
            s["state"] = _classify(s)
        self._offset_jumps(streams)
        disk_free = status.get("disk_free")
        self._channel_flags(recorder, streams)
        warnings = [w for s in streams for w in stream_warnings(s)]
        warnings += [f"{s.get('name', '?')} {f}" for s in streams
                     for f in s.get("channel_flags", [])]  # fmt: skip
        if disk_free is not None and disk_free < DISK_LOW_BYTES:
            warnings.append(f"disk low: {disk_free / 1e9:.2f} GB free")
        if status.get("failure"):
            warnings.append(f"recording failed: {_short(status['failure'])}")
        warnings += list(self._errors)
        return {
            "session_id": getattr(session, "session_id", None),
            "recording": bool(status.get("recording")),
            "elapsed_s": status.get("elapsed_s"),
            "file": status.get("file"),
            "bytes": status.get("bytes", 0),
            "disk_free": disk_free,
            "streams": streams,
            "traces": self._traces_json(),
            "devices": self._devices(session),
            "events": list(self._events),
            "warnings": warnings,
        }
