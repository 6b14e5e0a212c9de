"""Live traces of every channel, with names, units and a scale, for the control room.

The viewer taps the chunks the recorder already pulled (no inlet of its own) and
keeps a decimated copy of the last `TRACE_SECONDS` of up to `MAX_CHANNELS`
channels per stream, as float32. The page asks for one stream and a window of at
most `MAX_SHOWN` channels (the channel selector), so a 384-channel stream is
browsable without sending it all.

Bounds: `MAX_STREAMS` streams × `MAX_CHUNKS` chunks × `POINTS_PER_CHUNK` points ×
`MAX_CHANNELS` channels × 4 bytes = at most 2 MiB per stream, 64 MiB in all.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from lsl_session.xdf._parse import parse_stream_info

TRACE_SECONDS = 10.0
POINTS_PER_CHUNK = 16
MAX_CHUNKS = 128
MAX_CHANNELS = 256
MAX_STREAMS = 32
MAX_SHOWN = 16
POINTS_SENT = 400
#: Share of a window's points at a channel's min or max that reads as clipping.
CLIP_FRACTION = 0.2
#: Longest channel label or unit sent to the page (characters).
MAX_LABEL = 40


class ChannelTrace(TypedDict):
    """One channel of a stream's trace, as the page draws it."""

    index: int
    label: str
    unit: str
    min: float
    max: float
    values: list[float]


class StreamTrace(TypedDict):
    """The traces of a window of channels of one stream."""

    stream_id: int
    channel_count: int
    first: int
    t: list[float]
    channels: list[ChannelTrace]


@dataclass
class _Meta:
    labels: list[str]
    units: list[str]


def channel_meta(xml: str, count: int) -> tuple[list[str], list[str]]:
    """Channel labels and units from a stream's ``<info>`` XML (blank when absent)."""
    labels = [f"ch{i + 1}" for i in range(count)]
    units = [""] * count
    try:
        desc = parse_stream_info(xml).get("desc") or {}
        chans = (desc.get("channels") or [{}])[0] or {}
        for i, ch in enumerate((chans.get("channel") or [])[:count]):
            if not isinstance(ch, dict):
                continue
            label = (ch.get("label") or [None])[0]
            unit = (ch.get("unit") or ch.get("units") or [None])[0]
            if isinstance(label, str) and label.strip():
                labels[i] = label.strip()[:MAX_LABEL]
            if isinstance(unit, str):
                units[i] = unit.strip()[:MAX_LABEL]
    except Exception:  # a peer's XML: labels are a nicety, never a failure
        pass
    return labels, units


def _decimate(n: int, points: int) -> np.ndarray:
    if n <= points:
        return np.arange(n)
    return np.linspace(0, n - 1, points).astype(np.int64)


class ChannelViewer:
    """Keep the recent samples of every stream the recorder writes (see module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: dict[int, collections.deque] = {}
        self._meta: dict[int, _Meta] = {}
        self._recorder: Any = None

    def attach(self, recorder: Any) -> None:
        """Tap a new recorder (once); forget the previous recorder's traces."""
        if recorder is None or recorder is self._recorder:
            return
        taps = getattr(recorder, "taps", None)
        if taps is not None and self.tap not in taps:
            taps.append(self.tap)
        with self._lock:
            self._recorder = recorder
            self._chunks.clear()
            self._meta.clear()

    def tap(self, stream_id: int, stamps: np.ndarray, values: Any) -> None:
        """Keep a decimated copy of one pulled chunk (called by the recorder)."""
        if not isinstance(values, np.ndarray) or values.ndim != 2 or not len(stamps):
            return
        keep = _decimate(len(stamps), POINTS_PER_CHUNK)
        chunk = (
            np.asarray(stamps, dtype=np.float64)[keep],
            values[keep, :MAX_CHANNELS].astype(np.float32),
        )
        with self._lock:
            trace = self._chunks.get(stream_id)
            if trace is None:
                if len(self._chunks) >= MAX_STREAMS:
                    return
                trace = self._chunks[stream_id] = collections.deque(maxlen=MAX_CHUNKS)
            trace.append(chunk)
            newest = chunk[0][-1]
            while trace and trace[0][0][-1] < newest - TRACE_SECONDS:
                trace.popleft()

    def _labels(self, stream_id: int, count: int) -> _Meta:
        meta = self._meta.get(stream_id)
        if meta is None:
            xml = ""
            streams = getattr(self._recorder, "streams", {}) or {}
            stream = streams.get(stream_id) if isinstance(streams, dict) else None
            info = getattr(stream, "info", None)
            if info is not None:
                try:
                    xml = info.as_xml()
                except Exception:
                    xml = ""
            meta = _Meta(*channel_meta(xml, count))
            self._meta[stream_id] = meta
        return meta

    def flags(self, stream_id: int) -> list[str]:
        """``flat`` when no kept channel varies; ``clipped`` when one sits at its
        extremes for at least `CLIP_FRACTION` of the window (a saturated amplifier).
        """
        with self._lock:
            chunks = list(self._chunks.get(stream_id) or [])
        if len(chunks) < 2:
            return []
        v = np.concatenate([c[1] for c in chunks]).astype(np.float64)
        if not v.size:
            return []
        lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
        varying = hi > lo
        if not varying.any():
            return ["flat"]
        at_edge = (v == lo) | (v == hi)
        share = at_edge[:, varying].mean(axis=0)
        return ["clipped"] if (share >= CLIP_FRACTION).any() else []

    def trace(self, stream_id: int, first: int = 0) -> StreamTrace | None:
        """Up to `MAX_SHOWN` channels from ``first`` of one stream, or None."""
        with self._lock:
            chunks = list(self._chunks.get(stream_id) or [])
        if not chunks:
            return None
        t = np.concatenate([c[0] for c in chunks])
        v = np.concatenate([c[1] for c in chunks])
        count = v.shape[1]
        first = max(0, min(int(first), max(count - 1, 0)))
        window = v[:, first : first + MAX_SHOWN]
        keep = _decimate(len(t), POINTS_SENT)
        t, window = t[keep], window[keep]
        with self._lock:
            meta = self._labels(stream_id, count)
        out: list[ChannelTrace] = []
        for k in range(window.shape[1]):
            col = window[:, k].astype(np.float64)
            finite = col[np.isfinite(col)]
            lo = float(finite.min()) if finite.size else 0.0
            hi = float(finite.max()) if finite.size else 0.0
            out.append(
                {
                    "index": first + k,
                    "label": meta.labels[first + k],
                    "unit": meta.units[first + k],
                    "min": lo,
                    "max": hi,
                    # gaps and non-finite values stay gaps on the page
                    "values": [
                        float(x) if np.isfinite(x) else None  # type: ignore[misc]
                        for x in np.round(col, 6)
                    ],
                }
            )
        return {
            "stream_id": int(stream_id),
            "channel_count": int(count),
            "first": int(first),
            "t": np.round(t - t[-1], 3).tolist(),
            "channels": out,
        }
