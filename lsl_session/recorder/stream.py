"""One open LSL stream: its inlet, pull buffer, clock offsets and a short recent history.

A `PooledStream` owns no thread: the pool's single loop (``loop.py``) calls
`PooledStream.pull` and `PooledStream.poll_offset` for every stream in turn.
Neither call blocks. Every pulled chunk is handed to the stream's sinks (one per
recording run, `lsl_session.recorder.run.RunStream`), each of which keeps the
samples stamped inside its run, and kept for a few seconds in a bounded history
so a run that starts at an earlier request time still gets them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pylsl
from pylsl.util import LostError, handle_error
from pylsl.util import TimeoutError as LslTimeoutError

from lsl_session.lsl import format_name, stream_key

logger = logging.getLogger(__name__)

#: Seconds of data the preallocated pull buffer holds.
BUFFER_SECONDS = 1.0
MIN_BUFFER_SAMPLES = 1024
#: Delivery delays remembered per irregular stream (its stop allowance).
LAG_HISTORY = 64
#: Outlets remembered per stream (the data's sources, in order; rivals seen).
MAX_SOURCES = 32


class Sink(Protocol):
    """What receives a pooled stream's chunks (`lsl_session.recorder.run.RunStream`)."""

    def take(self, stamps: np.ndarray, values: Any, local: np.ndarray) -> None:
        """A pulled chunk (``local``: its stamps on the recorder's clock)."""

    def offset(self, collection: float, value: float) -> None:
        """A measured clock offset."""

    def settle(self, now: float) -> None:
        """Write what it holds back that is old enough (``now``: recorder clock)."""


@dataclass(slots=True)
class RecorderTiming:
    """Cadences of the recorder (seconds).

    ``offset_poll`` is how often a clock offset still being measured is looked
    at; after ``offset_timeout`` without a result the measurement counts as
    timed out (nothing is written) and the next one is due ``offset_interval``
    later. ``stop_grace`` is how long a stop waits at most for a stream to pass
    the cutoff; ``history`` how many seconds of pulled data every stream keeps
    for a run that starts at an earlier request time (at least
    ``stop_grace + 1``). ``irregular_poll`` is how often irregular streams
    (markers) are looked at, so their delivery delay is known to ±that.
    """

    pull_interval: float = 0.5
    offset_interval: float = 5.0
    offset_timeout: float = 1.0
    drain_quiet: float = 0.2
    stop_grace: float = 2.0
    offset_poll: float = 0.05
    irregular_poll: float = 0.05
    history: float = 3.0

    @property
    def history_seconds(self) -> float:
        """The history actually kept: ``history``, but ≥ ``stop_grace + 1``."""
        return max(self.history, self.stop_grace + 1.0)


class PooledStream:
    """Pull one LSL stream and hand its chunks to the runs recording it.

    Parameters
    ----------
    inlet : pylsl.StreamInlet
        An opened inlet (``recover=True`` so a returning source continues here).
    info : pylsl.StreamInfo
        The full info (``inlet.info()``), written as each run's StreamHeader.
    timing : RecorderTiming
        Cadences.

    Notes
    -----
    Samples land in a preallocated numpy buffer (``pull_chunk(dest_obj=...)``)
    and are handed on a whole chunk at a time; no Python work per sample except
    for string streams. Clock offsets are measured by liblsl's own time thread
    (started by the first ``time_correction`` call); asking with a zero timeout
    returns the latest estimate, so nothing here waits for the network.

    The history holds the chunks pulled in the last ``timing.history_seconds``
    (copies), at most ``history_seconds × max(nominal rate, 1024/s)`` samples:
    the memory bound of a stream between runs.
    """

    def __init__(
        self, inlet: pylsl.StreamInlet, info: pylsl.StreamInfo, timing: RecorderTiming
    ) -> None:
        self.inlet = inlet
        self.info = info
        self.timing = timing
        self.key = stream_key(info)
        self.name = info.name()
        self.type = info.type()
        self.source_id = info.source_id()
        self.hostname = info.hostname()
        self.channel_count = info.channel_count()
        self.nominal_srate = info.nominal_srate()
        self.channel_format = format_name(info)
        self.is_string = self.channel_format == "string"
        self.xml = info.as_xml()
        cap = max(MIN_BUFFER_SAMPLES, int(self.nominal_srate * BUFFER_SECONDS))
        self._capacity = cap
        self._buffer = (
            None
            if self.is_string
            else np.empty((cap, self.channel_count), dtype=inlet.np_dtype)
        )
        self._stamps = np.empty(cap, dtype=np.float64)
        self._error = ctypes.c_int()
        # liblsl's chunk pull into the two preallocated buffers, arguments built
        # once (what pylsl's pull_chunk(dest_obj=...) does on every call)
        self._pull_args = (
            None
            if self.is_string
            else (
                inlet.obj,
                ctypes.c_void_p(self._buffer.ctypes.data),
                ctypes.c_void_p(self._stamps.ctypes.data),
                ctypes.c_size_t(self._buffer.size),
                ctypes.c_size_t(cap),
                ctypes.c_double(0.0),
                ctypes.byref(self._error),
            )
        )
        self.sinks: list[Sink] = []
        #: the outlets the data came from, in order (uid, hostname, session_id)
        self.sources: list[dict[str, Any]] = [_source(info, None)]
        #: uids of other outlets seen with this source_id while it was open
        self.rivals: set[str] = set()
        self.lost = False
        self.last_offset = 0.0
        #: the sender runs on this machine: its stamps are on our clock already
        #: (liblsl's clock is the system's monotonic clock), so runs are cut on
        #: its raw stamps, not on a ±tens-of-µs offset estimate
        self.same_host = info.hostname() == socket.gethostname()
        self.offset_known = False
        self._offset_due = 0.0  # recorder clock; 0: measure right away
        self._offset_asked: float | None = None
        #: newest stamp pulled, on the recorder's clock; when it arrived (local_clock)
        self.newest: float | None = None
        self.last_arrival: float | None = None
        self._delays: deque[float] = deque(maxlen=LAG_HISTORY)
        #: keep the last seconds pulled (off once a single recording attached)
        self.keep_history = True
        self._history: deque[tuple[float, np.ndarray, Any]] = deque()
        self._history_samples = 0
        self._history_cap = int(
            timing.history_seconds * max(self.nominal_srate, MIN_BUFFER_SAMPLES)
        )

    @property
    def cut_offset(self) -> float:
        """What maps the stream's stamps to the recorder's clock to cut runs."""
        return 0.0 if self.same_host else self.last_offset

    @property
    def regular(self) -> bool:
        """True for a stream with a nominal rate (it passes a cutoff by itself)."""
        return self.nominal_srate > 0

    # ---------------------------------------------------------------- pulling
    def pull(self, now: float) -> int:
        """Move everything the inlet holds to the sinks, without waiting.

        Parameters
        ----------
        now : float
            The recorder's ``local_clock()`` (arrival time of what is pulled).

        Returns
        -------
        int
            The number of samples pulled.
        """
        if self.lost:
            return 0
        total = 0
        try:
            if not self.regular and not self.inlet.samples_available():
                return 0
            while True:
                if self.is_string:
                    values, stamps = self.inlet.pull_chunk(
                        timeout=0.0, max_samples=self._capacity
                    )
                    stamps = np.asarray(stamps, dtype=np.float64)
                else:
                    elements = self.inlet.do_pull_chunk(*self._pull_args)
                    if self._error.value:
                        handle_error(self._error)
                    count = elements // self.channel_count
                    values, stamps = self._buffer[:count], self._stamps[:count]
                n = len(stamps)
                if n == 0:
                    return total
                self._arrived(now, stamps, values)
                total += n
                if n < self._capacity:
                    return total
        except LostError:
            self.lost = True
            logger.warning(
                "stream %s was lost; its footer will still be written", self.name
            )
        return total

    def _arrived(self, now: float, stamps: np.ndarray, values: Any) -> None:
        if self.keep_history and not self.is_string:
            # the pull buffer is reused: the history keeps copies
            stamps, values = stamps.copy(), values.copy()
        local = stamps + self.cut_offset
        newest = float(local.max())
        self.newest = newest if self.newest is None else max(self.newest, newest)
        self.last_arrival = now
        self._delays.append(max(0.0, now - newest))
        if self.keep_history:
            self._remember(now, stamps, values)
        for sink in self.sinks:
            sink.take(stamps, values, local)

    def _remember(self, now: float, stamps: np.ndarray, values: Any) -> None:
        history = self._history
        history.append((now, stamps, values))
        self._history_samples += len(stamps)
        oldest = now - self.timing.history_seconds
        while history and (
            history[0][0] < oldest or self._history_samples > self._history_cap
        ):
            self._history_samples -= len(history.popleft()[1])

    def attach(self, sink: Sink) -> None:
        """Hand ``sink`` the history (its window picks), then every new chunk."""
        for _, stamps, values in self._history:
            sink.take(stamps, values, stamps + self.cut_offset)
        self.sinks.append(sink)

    def settle(self, now: float) -> None:
        """Let every sink write what it held back that is now old enough."""
        for sink in self.sinks:
            sink.settle(now)

    def drop_history(self) -> None:
        """Stop keeping a history (a pool with a single recording, attached)."""
        self.keep_history = False
        self._history.clear()
        self._history_samples = 0

    def detach(self, sink: Sink) -> None:
        """Stop handing chunks to ``sink``."""
        with contextlib.suppress(ValueError):
            self.sinks.remove(sink)

    def allowance(self) -> float:
        """How long an irregular stream may still deliver something stamped earlier.

        1.5 × the longest delivery delay seen over its last `LAG_HISTORY`
        arrivals (measured to ± ``irregular_poll``), at least ``drain_quiet``
        (200 ms), at most ``stop_grace``.
        """
        seen = 1.5 * max(self._delays, default=0.0)
        return min(self.timing.stop_grace, max(self.timing.drain_quiet, seen))

    def close(self) -> None:
        """End the data connection.

        A source closing after our stop is then no "transmission broke off"
        for a lingering inlet.
        """
        with contextlib.suppress(Exception):
            self.inlet.close_stream()

    def note_source(
        self, info: pylsl.StreamInfo, lsl_time: float
    ) -> dict[str, Any] | None:
        """Record that the data now comes from the outlet ``info``.

        Returns the change (``stream_source_changed`` details: old and new
        uid/host/session, time) or None when ``info`` is the current source.
        """
        old = self.sources[-1]
        if info.uid() == old["uid"]:
            return None
        new = _source(info, lsl_time)
        if len(self.sources) >= MAX_SOURCES:
            self.sources.pop(1)
        self.sources.append(new)
        return {
            "stream": self.name,
            "source_id": self.source_id,
            "old_uid": old["uid"],
            "new_uid": new["uid"],
            "old_host": old["hostname"],
            "new_host": new["hostname"],
            "old_session_id": old["session_id"],
            "new_session_id": new["session_id"],
            "restart": new["hostname"] == old["hostname"]
            and new["session_id"] == old["session_id"],
            "detected_lsl_time": lsl_time,
        }

    # ---------------------------------------------------------------- offsets
    def poll_offset(self, now: float, *, force: bool = False) -> bool:
        """Write a clock offset to every sink if one is due and measured.

        Parameters
        ----------
        now : float
            The recorder's ``local_clock()``.
        force : bool
            Ask now even if the next one is not due yet.

        Returns
        -------
        bool
            True while a due measurement is still running (poll again soon).
        """
        if self.lost or (now < self._offset_due and not force):
            return False
        if self._offset_asked is None:
            self._offset_asked = now
        try:
            offset = self.inlet.time_correction(timeout=0.0)
        except LslTimeoutError:
            if now - self._offset_asked < self.timing.offset_timeout:
                return True  # liblsl's time thread is still measuring
            logger.warning("clock offset of %s timed out; not written", self.name)
            self._next_offset(now)
            return False
        except LostError:
            self._next_offset(now)
            return False
        except Exception:
            logger.exception("clock offset of %s failed", self.name)
            self._next_offset(now)
            return False
        self.last_offset = offset
        self.offset_known = True
        for sink in list(self.sinks):
            sink.offset(now - offset, offset)
        self._next_offset(now)
        return False

    def _next_offset(self, now: float) -> None:
        self._offset_asked = None
        # until a first estimate exists, ask again soon (a busy machine)
        wait = self.timing.offset_interval if self.offset_known else 1.0
        self._offset_due = now + wait


def _source(info: pylsl.StreamInfo, since: float | None) -> dict[str, Any]:
    return {
        "uid": info.uid(),
        "hostname": info.hostname(),
        "session_id": info.session_id(),
        "since_lsl_time": since,
    }
