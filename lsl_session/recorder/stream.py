"""One recorded stream: its inlet, a pull thread and a clock-offset thread."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

from lsl_session.lsl import format_name
from lsl_session.recorder.output import OutputFailed, XdfOutput

logger = logging.getLogger(__name__)

#: Seconds of data the preallocated pull buffer holds.
BUFFER_SECONDS = 1.0
MIN_BUFFER_SAMPLES = 1024


@dataclass(slots=True)
class RecorderTiming:
    """Cadences of the recorder (seconds)."""

    pull_interval: float = 0.5
    offset_interval: float = 5.0
    offset_timeout: float = 1.0
    drain_quiet: float = 0.15
    drain_deadline: float = 0.6


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
    on_failure : callable
        ``on_failure(message)`` when the output fails or the thread crashes.

    Notes
    -----
    Samples land in a preallocated numpy buffer (``pull_chunk(dest_obj=...)``)
    and are encoded a whole chunk at a time; no Python work per sample except
    for string streams.
    """

    def __init__(
        self,
        stream_id: int,
        inlet: pylsl.StreamInlet,
        info: pylsl.StreamInfo,
        output: XdfOutput,
        timing: RecorderTiming,
        on_failure: Callable[[str], None],
    ) -> None:
        self.stream_id = stream_id
        self.inlet = inlet
        self.info = info
        self.output = output
        self.timing = timing
        self._on_failure = on_failure
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
        self.gaps = 0
        self.lost = False
        self.last_offset = 0.0
        self.last_pull_clock = pylsl.local_clock()
        self._stop = threading.Event()
        self._drain_until: float | None = None
        self._pull_thread = threading.Thread(
            target=self._pull_loop, name=f"pull-{self.name}", daemon=True
        )
        self._offset_thread = threading.Thread(
            target=self._offset_loop, name=f"offset-{self.name}", daemon=True
        )

    def start(self) -> None:
        """Start the pull and offset threads."""
        self._pull_thread.start()
        self._offset_thread.start()

    def request_stop(self, stop_clock: float) -> None:
        """Drain everything stamped up to ``stop_clock`` (recorder clock), then stop."""
        self._drain_until = stop_clock
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait for the pull thread (the offset thread may still be measuring)."""
        self._pull_thread.join(timeout)
        self._offset_thread.join(0.05)

    # ---------------------------------------------------------------- pulling
    def _pull_once(self, timeout: float = 0.0) -> int:
        """Move everything available (waiting up to ``timeout``) into the file."""
        total = 0
        while True:
            # min_samples=1: return as soon as data is there instead of waiting
            # for a full buffer (only matters when draining with a timeout)
            wait = {"min_samples": 1} if timeout > 0 else {}
            if self.is_string:
                values, stamps = self.inlet.pull_chunk(
                    timeout=timeout, max_samples=self._capacity, **wait
                )
                stamps = np.asarray(stamps, dtype=np.float64)
            else:
                values, stamps = self.inlet.pull_chunk(
                    timeout=timeout,
                    max_samples=self._capacity,
                    dest_obj=self._buffer,
                    as_numpy=True,
                    **wait,
                )
            n = len(stamps)
            if n == 0:
                return total
            self._count_gaps(stamps)
            self.output.write_samples(self.stream_id, stamps, values)
            total += n
            timeout = 0.0
            if n < self._capacity:
                return total

    def _count_gaps(self, stamps: np.ndarray) -> None:
        if self.nominal_srate <= 0:
            return
        last = self.output.stats(self.stream_id).last
        limit = 2.0 / self.nominal_srate
        steps = np.diff(stamps, prepend=stamps[0] if last is None else last)
        self.gaps += int(np.count_nonzero(steps > limit))

    def _pull_loop(self) -> None:
        try:
            while not self._stop.wait(self.timing.pull_interval):
                self._pull_once()
                self.last_pull_clock = pylsl.local_clock()
            self._drain()
        except LostError:
            self.lost = True
            logger.warning(
                "stream %s was lost; its footer will still be written", self.name
            )
        except OutputFailed as exc:
            self._on_failure(str(exc))
        except Exception as exc:
            logger.exception("recording stream %s failed", self.name)
            self._on_failure(f"stream {self.name}: {exc}")
        finally:
            # end the data connection now: a source closing after our stop is
            # no "transmission broke off" for a lingering inlet
            with contextlib.suppress(Exception):
                self.inlet.close_stream()

    def _drain(self) -> None:
        """Pull until the stream has passed the stop time or falls quiet."""
        if self._drain_until is None:
            return
        start = pylsl.local_clock()
        deadline = start + self.timing.drain_deadline
        while pylsl.local_clock() < deadline:
            got = self._pull_once(timeout=self.timing.drain_quiet)
            last = self.output.stats(self.stream_id).last
            if last is not None and last + self.last_offset >= self._drain_until:
                break
            if got == 0:
                break  # quiet for drain_quiet seconds: nothing more is in flight

    # ---------------------------------------------------------------- offsets
    def _offset_loop(self) -> None:
        while True:
            try:
                offset = self.inlet.time_correction(timeout=self.timing.offset_timeout)
            except LslTimeoutError:
                logger.warning("clock offset of %s timed out; not written", self.name)
                offset = None
            except LostError:
                offset = None
            except Exception:
                logger.exception("clock offset of %s failed", self.name)
                offset = None
            if offset is not None and not self._stop.is_set():
                now = pylsl.local_clock()
                self.last_offset = offset
                try:
                    self.output.write_clock_offset(self.stream_id, now - offset, offset)
                except OutputFailed as exc:
                    self._on_failure(str(exc))
                    return
            if self._stop.wait(self.timing.offset_interval):
                return

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
