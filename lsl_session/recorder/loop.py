"""The recorder's one loop: pulls, clock offsets, fsync, boundaries, the stop drain.

One thread serves every stream (LabRecorder and the first version of this recorder
ran two threads per stream). Each tick it pulls every inlet (``pull_chunk`` with a
zero timeout into preallocated buffers), writes the offsets that are due, and does
the file housekeeping. Between ticks it sleeps on an event, so a stop request
starts the drain at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pylsl

from lsl_session.recorder.output import OutputFailed, XdfOutput
from lsl_session.recorder.stream import RecordedStream, RecorderTiming

logger = logging.getLogger(__name__)

#: Pause between the drain's rounds over the streams still in flight.
DRAIN_POLL = 0.005


class PullLoop:
    """Run the recording of all streams in one thread.

    Parameters
    ----------
    output : XdfOutput
        The file.
    timing : RecorderTiming
        Pull, offset and drain cadences.
    flush_interval, boundary_interval : float
        Fsync and Boundary cadences (seconds).
    check_disk : callable
        Called after every fsync (free-space check).
    on_failure : callable
        ``on_failure(message)`` when a write failed or the loop crashed; the loop
        has ended by then.
    """

    def __init__(
        self,
        output: XdfOutput,
        timing: RecorderTiming,
        *,
        flush_interval: float,
        boundary_interval: float,
        check_disk: Callable[[], None],
        on_failure: Callable[[str], None],
    ) -> None:
        self.output = output
        self.timing = timing
        self.flush_interval = flush_interval
        self.boundary_interval = boundary_interval
        self._check_disk = check_disk
        self._on_failure = on_failure
        self.streams: tuple[RecordedStream, ...] = ()
        self._halt = threading.Event()
        self._stop_clock: float | None = None
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def add(self, stream: RecordedStream) -> None:
        """Record ``stream`` too from the next tick on (its first offset is asked now)."""
        self._first_offset(stream)
        self.streams = (*self.streams, stream)

    def start(self, streams: list[RecordedStream]) -> None:
        """Ask every stream's first clock offset, then start the thread."""
        for stream in streams:
            self._first_offset(stream)
        self.streams = tuple(streams)
        self._thread.start()

    def _first_offset(self, stream: RecordedStream) -> None:
        # starts liblsl's time thread of the inlet: the first estimate is ready
        # ~0.5 s later and written by the loop's fast offset polls
        try:
            stream.poll_offset(pylsl.local_clock())
        except OutputFailed as exc:
            self._on_failure(str(exc))

    def halt(self, stop_clock: float) -> None:
        """Drain what is stamped up to ``stop_clock`` (recorder clock), then end."""
        self._stop_clock = stop_clock
        self._halt.set()

    def join(self, timeout: float) -> None:
        """Wait for the loop (and its drain) to end."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ---------------------------------------------------------------- the loop
    def _run(self) -> None:
        t = self.timing
        now = time.monotonic()
        next_pull = now + t.pull_interval
        next_flush = now + self.flush_interval
        next_boundary = now + self.boundary_interval
        next_offsets = now + t.offset_poll  # first offsets: poll soon
        try:
            while not self._halt.wait(
                max(0.0, min(next_pull, next_offsets, next_flush) - time.monotonic())
            ):
                now = time.monotonic()
                streams = self.streams
                pulled = now >= next_pull
                if pulled:
                    for stream in streams:
                        stream.pull()
                    next_pull = max(next_pull + t.pull_interval, now + 0.01)
                if pulled or now >= next_offsets:
                    clock = pylsl.local_clock()
                    pending = False
                    for stream in streams:
                        pending |= stream.poll_offset(clock)
                    # a running measurement is looked at again soon; otherwise
                    # due offsets are written with the pulls
                    next_offsets = now + t.offset_poll if pending else float("inf")
                if now >= next_flush:
                    self.output.flush()
                    next_flush = now + self.flush_interval
                    self._check_disk()
                if now >= next_boundary:
                    self.output.write_boundary()
                    next_boundary = now + self.boundary_interval
                self.output.maybe_split_by_time()
            self._drain()
        except OutputFailed as exc:
            self._on_failure(str(exc))
        except Exception as exc:
            logger.exception("the recorder loop failed")
            self._on_failure(f"recorder failure: {exc}")
        finally:
            for stream in self.streams:
                stream.close()

    def _drain(self) -> None:
        """Pull until every stream has passed the stop time or fallen quiet."""
        stop_clock = self._stop_clock
        if stop_clock is None:
            return
        t = self.timing
        start = pylsl.local_clock()
        deadline = start + t.drain_deadline
        quiet_since = {s: start for s in self.streams if not s.lost}
        while quiet_since:
            for stream in list(quiet_since):
                got = stream.pull()
                now = pylsl.local_clock()
                last = stream.last_stamp()
                if stream.lost or (last is not None and last >= stop_clock):
                    del quiet_since[stream]
                elif got:
                    quiet_since[stream] = now
                elif now - quiet_since[stream] >= t.drain_quiet:
                    del quiet_since[stream]  # nothing more is in flight
            if not quiet_since or pylsl.local_clock() >= deadline:
                return
            time.sleep(DRAIN_POLL)
