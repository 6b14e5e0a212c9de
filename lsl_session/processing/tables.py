"""Synced streams → tables: per-stream columns, the aligned grid, the events table.

Times: ``lsl_time`` is the recorder's LSL clock (the synced stamps), ``time`` /
``onset`` are seconds since ``t0``, the recorder's start LSL time.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from lsl_session.errors import LslSessionError
from lsl_session.processing.model import SyncedStream

logger = logging.getLogger(__name__)

#: Highest default grid rate of the aligned table.
MAX_DEFAULT_RATE = 1000.0
#: Grid rate used when no stream is regular.
FALLBACK_RATE = 100.0
EVENT_COLUMNS = ["onset", "lsl_time", "duration", "description", "stream", "value"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A file-name-safe version of a stream name (``[A-Za-z0-9_.-]``)."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "stream"
    return cleaned[:120]


def column_labels(stream: SyncedStream) -> list[str]:
    """Unique channel column names (labels; duplicates get ``_2``, ``_3`` …)."""
    seen: dict[str, int] = {}
    out = []
    for label in stream.channel_labels:
        label = label.strip() or "ch"
        if label in ("time", "lsl_time"):
            label = f"{label}_ch"
        n = seen.get(label, 0) + 1
        seen[label] = n
        out.append(label if n == 1 else f"{label}_{n}")
    return out


def session_t0(streams: Iterable[SyncedStream], start_lsl_time: float | None) -> float:
    """The time origin: the recorder's start time, else the earliest stamp (else 0)."""
    if start_lsl_time is not None and math.isfinite(float(start_lsl_time)):
        return float(start_lsl_time)
    firsts = []
    for s in streams:
        finite = s.time_stamps[np.isfinite(s.time_stamps)]  # damaged stamps: skip
        if len(finite):
            firsts.append(float(finite[0]))
    return min(firsts) if firsts else 0.0


def is_numeric(stream: SyncedStream) -> bool:
    """Numeric stream with at least one channel and one sample."""
    return (
        not stream.is_string
        and stream.channel_count > 0
        and len(stream.time_stamps) > 0
    )


def default_rate(streams: Iterable[SyncedStream]) -> float:
    """The highest nominal rate of the regular numeric streams, capped at 1 kHz."""
    rates = [s.nominal_srate for s in streams if is_numeric(s) and s.nominal_srate > 0]
    return min(max(rates), MAX_DEFAULT_RATE) if rates else FALLBACK_RATE


def breaks(stream: SyncedStream) -> np.ndarray:
    """Bool array (n−1): True between samples i and i+1 that must not be bridged.

    A break is a dejitter or clock segment boundary, a backward step, or (regular
    streams) a jump of more than two nominal sample periods.
    """
    ts = stream.time_stamps
    n = len(ts)
    out = np.zeros(max(n - 1, 0), bool)
    if n < 2:
        return out
    diff = np.diff(ts)
    out |= diff < 0
    if stream.nominal_srate > 0:
        out |= diff > 2.0 / stream.nominal_srate
    for segs in (stream.segments, stream.clock_segments):
        for _, end in segs[:-1]:
            if 0 <= end < n - 1:
                out[end] = True
    return out


def gap_report(stream: SyncedStream) -> list[dict[str, float]]:
    """The gaps of a regular stream: jumps > 2 nominal periods (first 100)."""
    ts = stream.time_stamps
    if stream.nominal_srate <= 0 or len(ts) < 2:
        return []
    diff = np.diff(ts)
    at = np.flatnonzero(diff > 2.0 / stream.nominal_srate)
    return [
        {"after_index": int(i), "lsl_time": float(ts[i]), "duration_s": float(diff[i])}
        for i in at[:100]
    ]


def stream_frame(stream: SyncedStream, t0: float) -> pd.DataFrame:
    """One stream at its native rate: ``time``, ``lsl_time``, one column per channel."""
    ts = stream.time_stamps
    data: dict[str, Any] = {"time": ts - t0, "lsl_time": ts}
    labels = column_labels(stream)
    if stream.is_string:
        for k, label in enumerate(labels):
            data[label] = [row[k] if k < len(row) else "" for row in stream.time_series]
    else:
        for k, label in enumerate(labels):
            data[label] = stream.time_series[:, k]
    return pd.DataFrame(data)


def aligned_dtype(stream: SyncedStream) -> np.dtype:
    """float32 for float32/int8/int16 sources (exact), float64 otherwise."""
    small = stream.time_series.dtype.kind in "iu" and stream.time_series.itemsize <= 2
    return np.dtype(
        np.float32 if small or stream.time_series.dtype == np.float32 else np.float64
    )


#: A gap longer than this (and than 100 typical intervals) splits a stream into clusters.
MIN_CLUSTER_GAP = 60.0
#: Slack (s) around the recorder's start/stop when they bound the grid.
WINDOW_SLACK = 1.0
#: The grid may be at most this many times longer than the time covered by data …
MAX_EMPTY_FACTOR = 10.0
#: … unless it has at most this many rows.
MIN_GRID_ROWS = 1_000_000


class GridError(LslSessionError):
    """The aligned grid would be implausibly long (stamps far outside the recording)."""


def stream_clusters(
    ts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted finite stamps split at long gaps.

    A gap splits when it is longer than ``MIN_CLUSTER_GAP`` and than 100 times the
    median interval. Works on whole arrays (no per-sample Python).

    Returns
    -------
    first, last, sizes : ndarray
        First and last stamp and sample count per cluster.
    stamps : ndarray
        The sorted finite stamps.
    """
    ts = np.sort(ts[np.isfinite(ts)])
    if not len(ts):
        return np.zeros(0), np.zeros(0), np.zeros(0, np.intp), ts
    diff = np.diff(ts)
    typical = float(np.median(diff)) if len(diff) else 0.0
    cuts = np.flatnonzero(diff > max(MIN_CLUSTER_GAP, 100.0 * typical))
    starts = np.concatenate(([0], cuts + 1))
    ends = np.concatenate((cuts, [len(ts) - 1]))
    return ts[starts], ts[ends], ends - starts + 1, ts


def robust_span(
    ts: np.ndarray, srate: float = 0.0
) -> tuple[float, float, float] | None:
    """The span of a stream's data without stray samples: (first, last, covered s).

    Clusters (see :func:`stream_clusters`) with fewer than 2 samples, or fewer than
    10 % of the largest cluster's samples, are strays (a stamp 10^7 s late); the
    span runs from the first to the last other cluster. ``covered`` is the time the
    span holds data that can be interpolated: the sum of the intervals between
    neighbouring samples no longer than 2 sample periods (``srate`` > 0) or
    ``MIN_CLUSTER_GAP`` (irregular streams).
    """
    first, last, sizes, stamps = stream_clusters(np.asarray(ts, dtype=np.float64))
    if not len(sizes):
        return None
    keep = sizes >= max(2.0, 0.1 * float(sizes.max()))
    if not keep.any():
        keep = sizes == sizes.max()
    lo, hi = float(first[keep][0]), float(last[keep][-1])
    diff = np.diff(stamps)
    limit = 2.0 / srate if srate > 0 else MIN_CLUSTER_GAP
    inside = (stamps[:-1] >= lo) & (stamps[1:] <= hi) & (diff <= limit)
    return lo, hi, float(np.sum(diff[inside]))


def _window_applies(numeric: list[SyncedStream], window: tuple[float, float]) -> bool:
    """The recorder's window holds (nearly) all samples: it may bound the grid.

    A run missing from the metadata (a crash) leaves many samples outside it; then
    only the robust spans bound the grid.
    """
    lo, hi = window[0] - WINDOW_SLACK, window[1] + WINDOW_SLACK
    total = outside = 0
    for s in numeric:
        ts = s.time_stamps
        total += len(ts)
        outside += int(np.count_nonzero((ts < lo) | (ts > hi) | ~np.isfinite(ts)))
    return outside <= max(10, 0.01 * total)


def grid_span(
    streams: list[SyncedStream],
    t0: float,
    rate: float,
    window: tuple[float, float] | None = None,
) -> tuple[int, int]:
    """First and last grid index k (grid time k/rate after t0) covering the streams.

    The grid covers the union of the numeric streams' robust spans
    (:func:`robust_span`), each clipped to the recorder's ``window`` (start and stop
    LSL time, ± ``WINDOW_SLACK``) when that window holds nearly all samples.

    Raises
    ------
    GridError
        If the grid would be more than ``MAX_EMPTY_FACTOR`` times longer than the
        longest time any stream covers, and longer than ``MIN_GRID_ROWS`` rows.
    """
    numeric = [s for s in streams if is_numeric(s)]
    if window is not None and not (
        all(math.isfinite(float(w)) for w in window) and window[0] <= window[1]
    ):
        window = None
    if window is not None and not _window_applies(numeric, window):
        window = None
    firsts, lasts, covered = [], [], 0.0
    for s in numeric:
        span = robust_span(s.time_stamps, s.nominal_srate)
        if span is None:
            continue
        first, last, cov = span
        if window is not None:
            lo, hi = window[0] - WINDOW_SLACK, window[1] + WINDOW_SLACK
            if first <= hi and last >= lo:
                first, last = max(first, lo), min(last, hi)
        firsts.append(first)
        lasts.append(last)
        covered = max(covered, min(cov, last - first))
    if not firsts:
        return 0, -1
    first, last = min(firsts), max(lasts)
    k0 = math.ceil((first - t0) * rate - 1e-9)
    k1 = math.floor((last - t0) * rate + 1e-9)
    check_grid(k1 - k0 + 1, rate, covered)
    return k0, k1


def covered_seconds(streams: Iterable[SyncedStream]) -> float:
    """The longest time any numeric stream covers with data (see `robust_span`)."""
    spans = [
        robust_span(s.time_stamps, s.nominal_srate) for s in streams if is_numeric(s)
    ]
    return max((sp[2] for sp in spans if sp is not None), default=0.0)


def check_grid(rows: int, rate: float, covered: float) -> None:
    """Raise `GridError` if a grid of ``rows`` at ``rate`` is implausibly long.

    Implausible: more than ``MIN_GRID_ROWS`` rows and more than ``MAX_EMPTY_FACTOR``
    times the longest time a stream covers with data (``covered`` seconds).
    """
    if rows > max(MIN_GRID_ROWS, MAX_EMPTY_FACTOR * rate * covered):
        raise GridError(
            f"the aligned grid would span {rows / rate:.6g} s ({rows} rows at "
            f"{rate:g} Hz) but the streams hold data for only {covered:.6g} s: "
            "stamps far outside the recording; the per-stream tables are written"
        )


class Interpolator:
    """Linear interpolation of one stream onto grid times, NaN across breaks."""

    def __init__(self, stream: SyncedStream) -> None:
        ts = stream.time_stamps
        brk = breaks(stream)
        if len(ts) > 1 and np.any(np.diff(ts) < 0):
            order = np.argsort(ts, kind="stable")
            seg = np.concatenate(([0], np.cumsum(brk)))[order]
            ts = ts[order]
            brk = (np.diff(seg) != 0) | (
                np.diff(ts) > 2.0 / stream.nominal_srate
                if stream.nominal_srate > 0
                else False
            )
            self.values = stream.time_series[order]
        else:
            self.values = stream.time_series
        self.ts = ts
        self.brk = brk
        self.dtype = aligned_dtype(stream)

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        """Values at ``grid`` (LSL times), shape (len(grid), n_channels)."""
        ts, n = self.ts, len(self.ts)
        out = np.empty((len(grid), self.values.shape[1]), self.dtype)
        left = np.searchsorted(ts, grid, side="right") - 1
        inner = (left >= 0) & (left < n - 1)
        ok = inner.copy()
        ok[inner] = ~self.brk[left[inner]]
        lo_k = int(np.argmax(ok)) if ok.any() else len(ok)  # first usable point
        hi_k = len(ok)
        dense = bool(ok[lo_k:].all()) if lo_k < len(ok) else False
        sel: slice | np.ndarray = slice(lo_k, hi_k) if dense else ok
        if not dense:
            out[:] = np.nan
        else:
            out[:lo_k] = np.nan
        idx = left[sel]
        t_lo = ts[idx]
        span = ts[idx + 1] - t_lo
        w = np.divide(grid[sel] - t_lo, span, out=np.zeros_like(span), where=span > 0)
        lo = self.values[idx].astype(self.dtype, copy=False)
        hi = self.values[idx + 1].astype(self.dtype, copy=False)
        hi -= lo
        hi *= w.astype(self.dtype)[:, None]
        hi += lo
        out[sel] = hi
        exact = ~ok & (left >= 0) & (left < n)
        if exact.any():  # a grid point exactly on a sample next to a break
            hit = exact & (ts[np.clip(left, 0, n - 1)] == grid)
            out[hit] = self.values[left[hit]]
        return out


def aligned_blocks(
    streams: list[SyncedStream],
    t0: float,
    rate: float,
    *,
    block: int = 262_144,
    window: tuple[float, float] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
    """Yield the aligned grid in blocks: (time, lsl_time, one array per stream).

    The grid is bounded as :func:`grid_span` describes (``window``: the recorder's
    start and stop LSL time, if known).
    """
    numeric = [s for s in streams if is_numeric(s)]
    k0, k1 = grid_span(numeric, t0, rate, window)
    interps = [Interpolator(s) for s in numeric]
    for start in range(k0, k1 + 1, block):
        k = np.arange(start, min(start + block, k1 + 1), dtype=np.float64)
        rel = k / rate
        lsl = rel + t0
        yield rel, lsl, [f(lsl) for f in interps]


def aligned_columns(streams: list[SyncedStream]) -> list[str]:
    """Column names of the aligned table after ``time``/``lsl_time``."""
    numeric = [s for s in streams if is_numeric(s)]
    return [
        f"{key}/{label}"
        for s, key in zip(numeric, stream_keys(numeric), strict=True)
        for label in column_labels(s)
    ]


def aligned_frame(
    streams: list[SyncedStream],
    t0: float,
    rate: float,
    window: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """The aligned table in memory (small sessions; the writer streams blocks)."""
    names = aligned_columns(streams)
    parts = []
    for rel, lsl, arrays in aligned_blocks(streams, t0, rate, window=window):
        data: dict[str, Any] = {"time": rel, "lsl_time": lsl}
        cols = [a[:, k] for a in arrays for k in range(a.shape[1])]
        data.update(zip(names, cols, strict=True))
        parts.append(pd.DataFrame(data))
    if not parts:
        return pd.DataFrame(columns=["time", "lsl_time", *names])
    return pd.concat(parts, ignore_index=True)


def is_session_event_stream(stream: SyncedStream, session_id: str | None) -> bool:
    """The session's own event stream (JSON samples).

    Its source_id is ``lsl_session/[<rig>/]<session_id>/events``; a phone's events
    stream (``lsl_session/[<rig>/]<device>/events``, plain labels) is not it.
    """
    if not stream.is_string or not stream.source_id.startswith("lsl_session/"):
        return bool(session_id) and stream.name == f"{session_id}_events"
    if session_id:
        return stream.name == f"{session_id}_events" or stream.source_id.endswith(
            f"/{session_id}/events"
        )
    first = stream.time_series[0] if len(stream.time_series) else [""]
    return stream.source_id.endswith("/events") and str(first[0]).startswith("{")


def describe_event(value: str) -> str:
    """Description of a session event (JSON): ``event`` plus its label, if any."""
    try:
        event = json.loads(value)
    except ValueError:
        return value
    if not isinstance(event, dict):
        return value
    name = str(event.get("event", "event"))
    label = event.get("label") or event.get("marker")
    return f"{name}/{label}" if label else name


def events_frame(
    streams: Iterable[SyncedStream],
    t0: float,
    session_id: str | None = None,
    log_events: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Markers of every string stream, plus session events.

    Session events come from the ``<session_id>_events`` stream when it was
    recorded, else from ``log_events`` (the JSON log, stamped with ``lsl_time``).
    """
    rows: list[pd.DataFrame] = []
    has_session_stream = False
    streams = list(streams)
    for s, key in zip(streams, stream_keys(streams), strict=True):
        if not s.is_string or not len(s.time_stamps):
            continue
        values = ["/".join(row) if len(row) != 1 else row[0] for row in s.time_series]
        session = is_session_event_stream(s, session_id)
        has_session_stream |= session
        desc = [describe_event(v) for v in values] if session else values
        rows.append(pd.DataFrame({
            "onset": s.time_stamps - t0, "lsl_time": s.time_stamps,
            "duration": 0.0, "description": desc, "stream": key, "value": values,
        }))  # fmt: skip
    if not has_session_stream and log_events:
        logged = [e for e in log_events if isinstance(e.get("lsl_time"), int | float)]
        if logged:
            lsl = np.array([float(e["lsl_time"]) for e in logged])
            values = [json.dumps(e, ensure_ascii=False, default=str) for e in logged]
            rows.append(pd.DataFrame({
                "onset": lsl - t0, "lsl_time": lsl, "duration": 0.0,
                "description": [describe_event(v) for v in values],
                "stream": "session_log", "value": values,
            }))  # fmt: skip
    if not rows:
        return pd.DataFrame(
            {
                c: pd.Series(
                    dtype=float if c in ("onset", "lsl_time", "duration") else object
                )
                for c in EVENT_COLUMNS
            }
        )
    frame = pd.concat(rows, ignore_index=True)
    return frame.sort_values("lsl_time", kind="stable").reset_index(drop=True)


def stream_keys(streams: Iterable[SyncedStream]) -> list[str]:
    """A unique display key per stream: its name, disambiguated when names repeat.

    Streams sharing a name get ``name@source_id`` when their source ids differ,
    else ``name@hostname``, else ``name#<stream id>``. The key names the stream
    in MNE channel names, aligned columns, event ``stream`` values and file names.
    """
    streams = list(streams)
    by_name: dict[str, list[int]] = {}
    for k, s in enumerate(streams):
        by_name.setdefault(s.name, []).append(k)
    keys = [s.name for s in streams]
    for name, idx in by_name.items():
        if len(idx) < 2:
            continue
        group = [streams[k] for k in idx]
        for attr in ("source_id", "hostname"):
            values = [str(_identity(s, attr)) for s in group]
            if all(values) and len(set(values)) == len(values):
                for k, v in zip(idx, values, strict=True):
                    keys[k] = f"{name}@{v}"
                break
        else:
            for k in idx:
                keys[k] = f"{name}#{streams[k].stream_id}"
    return keys


def _identity(stream: SyncedStream, attr: str) -> str:
    if attr == "source_id":
        return stream.source_id or ""
    return str(stream.info.get(attr) or "")
