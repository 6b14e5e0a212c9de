"""``lsl-session replay``: republish a recording as LSL streams, with its timing.

Like mne-lsl's Player, for XDF: every stream of the recording (or those matching
``--stream`` predicates) gets an outlet with the recorded header (name, type,
channel count and format, rate, source_id and the whole ``desc``: channel labels,
units, types, acquisition). The samples are the synced, dejittered ones
(`load_session`), pushed in numpy chunks on a short tick, each with an explicit
stamp ``start + (t - t_first) / speed`` on this host's LSL clock, so streams keep
their relative timing and a recorder sees the recording's sample spacing (÷
``speed``). With ``loop`` the recording repeats, its stamps continuing after one
recording span plus one sample period.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
from pylsl.util import handle_error

from lsl_session.errors import LslSessionError
from lsl_session.limits import clip, stream_refusal
from lsl_session.lsl import combine_queries, matches_query
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.session_data import load_session
from lsl_session.xdf import load_raw

logger = logging.getLogger(__name__)

#: Seconds between pushes (each push is one chunk per stream).
TICK_S = 0.01
#: Seconds the outlets stay after the last push, so consumers get the tail.
LINGER_S = 1.0
#: Deepest ``desc`` element copied into a replayed header.
MAX_DESC_DEPTH = 32
#: Loop wraps pushed in one tick; a recording shorter than a tick ÷ this (a
#: 1-sample file at 200 kHz) skips the cycles beyond it instead of spinning.
MAX_WRAPS_PER_TICK = 100
_FORMATS = {
    "float32": pylsl.cf_float32, "double64": pylsl.cf_double64,
    "string": pylsl.cf_string, "int32": pylsl.cf_int32, "int16": pylsl.cf_int16,
    "int8": pylsl.cf_int8, "int64": pylsl.cf_int64,
}  # fmt: skip


class ReplayError(LslSessionError):
    """A recording cannot be replayed (no stream matches, bad options)."""


def _copy_desc(src: ET.Element, node: pylsl.XMLElement, depth: int = 0) -> None:
    if depth >= MAX_DESC_DEPTH:
        return
    for child in src:
        if len(child):
            _copy_desc(child, node.append_child(child.tag), depth + 1)
        else:
            node.append_child_value(child.tag, (child.text or "").strip())


def stream_info(stream: SyncedStream, header_xml: str | None) -> pylsl.StreamInfo:
    """A ``StreamInfo`` with the recorded identity and the header's whole ``desc``."""
    fmt = _FORMATS.get(stream.channel_format)
    if fmt is None:
        raise ReplayError(
            f"{stream.name}: cannot replay format {stream.channel_format!r}"
        )
    info = pylsl.StreamInfo(
        stream.name, stream.type, stream.channel_count, stream.nominal_srate, fmt,
        stream.source_id,
    )  # fmt: skip
    if header_xml:
        try:
            desc = ET.fromstring(header_xml.encode("utf-8")).find("desc")
        except ET.ParseError:
            desc = None
        if desc is not None:
            _copy_desc(desc, info.desc())
    return info


@dataclass(slots=True)
class _Track:
    stream: SyncedStream
    outlet: pylsl.StreamOutlet
    rel: np.ndarray  # stamps relative to the recording's first stamp
    values: Any
    cursor: int = 0
    pushed: int = 0

    def push(self, hi: int, base: float, speed: float) -> None:
        """Push samples ``cursor:hi`` stamped ``base + rel / speed``."""
        lo = self.cursor
        if hi <= lo:
            return
        stamps = np.ascontiguousarray(base + self.rel[lo:hi] / speed, np.float64)
        if self.stream.is_string:
            rows = [list(r) for r in self.values[lo:hi]]
            self.outlet.push_chunk(rows, stamps.tolist())
        else:
            block = np.ascontiguousarray(self.values[lo:hi], self.outlet.np_dtype)
            handle_error(
                self.outlet.do_push_chunk_n(
                    self.outlet.obj, ctypes.c_void_p(block.ctypes.data),
                    ctypes.c_long(block.size),
                    stamps.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
                    ctypes.c_int(1),
                )
            )  # fmt: skip
        self.pushed += hi - lo
        self.cursor = hi


@dataclass(slots=True)
class Player:
    """Replay an XDF recording (or a session folder) as LSL outlets.

    Parameters
    ----------
    path : Path | str
        An ``.xdf`` file (its ``_partNNN`` siblings too) or a session folder.
    speed : float
        Playback rate: 2 plays twice as fast (stamps compressed alike).
    loop : bool
        Repeat until stopped.
    queries : list of str | None
        LSL predicates (``name='EEG'``, ``type='Markers'``); a stream is replayed
        when it matches any. None replays every stream.

    Raises
    ------
    ReplayError
        For a non-positive speed, or when no stream matches the queries.
    """

    path: Path | str
    speed: float = 1.0
    loop: bool = False
    queries: list[str] | None = None
    tracks: list[_Track] = field(default_factory=list)
    span: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.speed > 0 or not np.isfinite(self.speed):
            raise ReplayError(f"--speed must be a positive number, got {self.speed}")
        query = combine_queries(self.queries)
        data = load_session(self.path)
        headers = _header_xml(data.files[0]) if data.files else {}
        chosen = []
        for s in data.streams:
            info = stream_info(s, headers.get(s.stream_id))
            if query is None or matches_query(info, query):
                chosen.append((s, info))
        for s, _info in chosen:  # before any outlet: liblsl preallocates by rate
            reason = stream_refusal(s.nominal_srate, s.channel_count)
            if reason is not None:
                raise ReplayError(f"{self.path}: stream {clip(s.name, 80)!r}: {reason}")
        if not chosen:
            known = ", ".join(s.name for s in data.streams) or "none"
            raise ReplayError(
                f"no stream of {self.path} matches {' or '.join(self.queries or [])}"
                f" (streams: {known})"
            )
        starts = [float(s.time_stamps[0]) for s, _ in chosen if len(s.time_stamps)]
        ends = [float(s.time_stamps[-1]) for s, _ in chosen if len(s.time_stamps)]
        first = min(starts, default=0.0)
        rates = [s.nominal_srate for s, _ in chosen if s.nominal_srate > 0]
        period = 1.0 / max(rates) if rates else TICK_S
        self.span = (max(ends, default=0.0) - first) + period
        for s, info in chosen:
            order = np.argsort(s.time_stamps, kind="stable")
            values = (
                [s.time_series[i] for i in order]
                if s.is_string
                else np.asarray(s.time_series)[order]
            )
            rel = np.asarray(s.time_stamps, np.float64)[order] - first
            self.tracks.append(_Track(s, pylsl.StreamOutlet(info), rel, values))

    @property
    def streams(self) -> list[SyncedStream]:
        """The replayed streams."""
        return [t.stream for t in self.tracks]

    def wait_for_consumers(self, timeout: float) -> bool:
        """Wait until every outlet has a consumer (at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        for t in self.tracks:
            left = max(0.0, deadline - time.monotonic())
            if not t.outlet.wait_for_consumers(left):
                return False
        return True

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current tick (thread-safe)."""
        self._stop.set()

    def run(self) -> dict[str, int]:
        """Push the recording in real time ÷ speed; return samples pushed per stream.

        Returns after the last sample (without ``loop``) or when :meth:`stop` is
        called.
        """
        start = pylsl.local_clock()
        cycle = wraps = skipped = 0
        while not self._stop.is_set():
            pos = (pylsl.local_clock() - start) * self.speed - cycle * self.span
            base = start + cycle * self.span / self.speed
            for t in self.tracks:
                t.push(int(np.searchsorted(t.rel, pos, side="right")), base, self.speed)
            if pos >= self.span or all(t.cursor == len(t.rel) for t in self.tracks):
                if not self.loop:
                    break
                if pos >= self.span:
                    for t in self.tracks:
                        t.push(len(t.rel), base, self.speed)
                        t.cursor = 0
                    cycle += 1
                    wraps += 1
                    if wraps < MAX_WRAPS_PER_TICK:
                        continue
                    # more cycles due than one tick may push: skip to the current
                    behind = int(pos // self.span) - 1
                    if behind > 0:
                        if not skipped:
                            logger.warning(
                                "recording span %.3g s is too short to loop in real"
                                " time; skipping cycles", self.span
                            )  # fmt: skip
                        cycle += behind
                        skipped += behind
            wraps = 0
            self._stop.wait(TICK_S)
        return {t.stream.name: t.pushed for t in self.tracks}

    def close(self, linger: float = LINGER_S) -> None:
        """Destroy the outlets (the streams vanish from the network).

        Waits ``linger`` seconds first while any outlet has consumers, so the
        last chunk reaches them (liblsl drops what is unsent at destruction).
        """
        if linger > 0 and any(t.outlet.have_consumers() for t in self.tracks):
            time.sleep(linger)
        self.tracks.clear()


def _header_xml(path: str) -> dict[int, str]:
    try:
        raw = load_raw(Path(path), headers_only=True)
    except Exception:  # the samples loaded, so headers are best effort only
        return {}
    return {sid: s.info_xml for sid, s in raw.streams.items()}
