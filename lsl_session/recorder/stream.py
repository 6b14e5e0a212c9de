"""One recorded stream: its inlet, its pull buffer and its clock offsets.

A `RecordedStream` owns no thread: the recorder's single loop (``core.py``) calls
`RecordedStream.pull` and `RecordedStream.poll_offset` for every stream in turn.
Neither call blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from dataclasses import dataclass

import numpy as np
import pylsl
from pylsl.util import LostError, handle_error
from pylsl.util import TimeoutError as LslTimeoutError

from lsl_session.lsl import format_name
from lsl_session.recorder.output import XdfOutput

logger = logging.getLogger(__name__)

#: Seconds of data the preallocated pull buffer holds.
BUFFER_SECONDS = 1.0
MIN_BUFFER_SAMPLES = 1024


@dataclass(slots=True)
class RecorderTiming:
    """Cadences of the recorder (seconds).

    ``offset_poll`` is how often a clock offset still being measured is looked
    at; after ``offset_timeout`` without a result the measurement counts as
    timed out (nothing is written) and the next one is due ``offset_interval``
    later.
    """

    pull_interval: float = 0.5
    offset_interval: float = 5.0
    offset_timeout: float = 1.0
    drain_quiet: float = 0.15
    drain_deadline: float = 0.6
    offset_poll: float = 0.05


class RecordedStream:
    """Pull one LSL stream into the XDF output, with its clock offsets.

    Parameters
    ----------
    stream_id : int
        The XDF stream id.
    inlet : pylsl.StreamInlet
        An opened inlet (``recover=True`` so a returning source continues here).
    info : pylsl.StreamInfo
        The full info (``inlet.info()``), written as the StreamHeader.
    output : XdfOutput
        Where chunks go.
    timing : RecorderTiming
        Cadences.

    Notes
    -----
    Samples land in a preallocated numpy buffer (``pull_chunk(dest_obj=...)``)
    and are encoded a whole chunk at a time; no Python work per sample except
    for string streams. Clock offsets are measured by liblsl's own time thread
    (started by the first ``time_correction`` call); asking with a zero timeout
    returns the latest estimate, so nothing here waits for the network.
    """

    def __init__(
        self,
        stream_id: int,
        inlet: pylsl.StreamInlet,
        info: pylsl.StreamInfo,
        output: XdfOutput,
        timing: RecorderTiming,
    ) -> None:
        self.stream_id = stream_id
        self.inlet = inlet
        self.info = info
        self.output = output
        self.timing = timing
        self.name = info.name()
        self.type = info.type()
        self.source_id = info.source_id()
        self.hostname = info.hostname()
        self.channel_count = info.channel_count()
        self.nominal_srate = info.nominal_srate()
        self.channel_format = format_name(info)
        self.is_string = self.channel_format == "string"
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
        self._gap_limit = 2.0 / self.nominal_srate if self.nominal_srate > 0 else 0.0
        self.gaps = 0
        self.lost = False
        self.last_offset = 0.0
        self._offset_due = 0.0  # recorder clock; 0: measure right away
        self._offset_asked: float | None = None

    # ---------------------------------------------------------------- pulling
    def pull(self) -> int:
        """Move everything the inlet holds into the file, without waiting.

        Returns
        -------
        int
            The number of samples written.

        Raises
        ------
        OutputFailed
            If the write failed (the recording has to end).
        """
        if self.lost:
            return 0
        total = 0
        try:
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
                if self._gap_limit:
                    self._count_gaps(stamps)
                self.output.write_samples(self.stream_id, stamps, values)
                total += n
                if n < self._capacity:
                    return total
        except LostError:
            self.lost = True
            logger.warning(
                "stream %s was lost; its footer will still be written", self.name
            )
        return total

    def close(self) -> None:
        """End the data connection (after the drain).

        A source closing after our stop is then no "transmission broke off"
        for a lingering inlet.
        """
        with contextlib.suppress(Exception):
            self.inlet.close_stream()

    def _count_gaps(self, stamps: np.ndarray) -> None:
        last = self.output.stats(self.stream_id).last
        gaps = int(np.count_nonzero(np.diff(stamps) > self._gap_limit))
        if last is not None and stamps[0] - last > self._gap_limit:
            gaps += 1
        self.gaps += gaps

    def last_stamp(self) -> float | None:
        """The last recorded stamp on the recorder's clock (None before any sample)."""
        last = self.output.stats(self.stream_id).last
        return None if last is None else last + self.last_offset

    # ---------------------------------------------------------------- offsets
    def poll_offset(self, now: float) -> bool:
        """Write a clock offset if one is due and measured.

        Parameters
        ----------
        now : float
            The recorder's ``local_clock()``.

        Returns
        -------
        bool
            True while a due measurement is still running (poll again soon).

        Raises
        ------
        OutputFailed
            If writing the ClockOffset chunk failed.
        """
        if self.lost or now < self._offset_due:
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
        self.output.write_clock_offset(self.stream_id, now - offset, offset)
        self._next_offset(now)
        return False

    def _next_offset(self, now: float) -> None:
        self._offset_asked = None
        self._offset_due = now + self.timing.offset_interval

    # ----------------------------------------------------------------- status
    def status(self, now: float) -> dict:
        """Live figures for the status display."""
        stats = self.output.stats(self.stream_id)
        rate = 0.0
        if stats.count > 1 and stats.last is not None and stats.first is not None:
            span = stats.last - stats.first
            rate = (stats.count - 1) / span if span > 0 else 0.0
        age = None if stats.last is None else now - (stats.last + self.last_offset)
        # lag means something only for a regular stream: an irregular one (markers,
        # the session's own events) is quiet between events by design
        lag = age if self.nominal_srate > 0 else None
        recent = [value for _, value in stats.offsets[-10:]]
        return {
            "stream_id": self.stream_id,
            "name": self.name,
            "type": self.type,
            "samples": stats.count,
            "nominal_srate": self.nominal_srate,
            "effective_srate": round(rate, 3),
            "lag_s": None if lag is None else round(lag, 3),
            "last_sample_age_s": None if age is None else round(age, 3),
            "clock_offset": recent[-1] if recent else None,
            "clock_offset_spread_ms": (
                round(float(np.std(recent)) * 1e3, 4) if len(recent) > 1 else None
            ),
            "clock_offsets": len(stats.offsets),
            "gaps": self.gaps,
            "lost": self.lost,
        }

    def summary(self) -> dict:
        """The stream's entry in the session metadata."""
        stats = self.output.stats(self.stream_id)
        return {
            "stream_id": self.stream_id,
            "name": self.name,
            "type": self.type,
            "source_id": self.source_id,
            "hostname": self.hostname,
            "channel_count": self.channel_count,
            "channel_format": self.channel_format,
            "nominal_srate": self.nominal_srate,
            "sample_count": stats.count,
            "first_timestamp": stats.first,
            "last_timestamp": stats.last,
            "clock_offsets": len(stats.offsets),
            "gaps": self.gaps,
        }
