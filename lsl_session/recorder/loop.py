"""The recorder's one loop: pulls, clock offsets, the stop drain, each run's file upkeep.

One thread serves every stream of a pool (LabRecorder runs two threads per
stream). Each tick it pulls every inlet (``pull_chunk`` with a zero timeout into
preallocated buffers; irregular streams more often, so their delivery delay is
known), writes the clock offsets that are due, ends the streams of a stopping
run that passed the cutoff, and keeps each run's file (fsync, boundaries,
splitting, disk checks). Between ticks it sleeps on an event.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import pylsl

from lsl_session.recorder.stream import PooledStream, RecorderTiming


class LoopPool(Protocol):
    """What the loop needs from its pool (`lsl_session.recorder.pool.StreamPool`)."""

    lock: Any
    streams: dict[str, PooledStream]
    runs: list[Any]
    timing: RecorderTiming

    def fail(self, message: str) -> None:
        """The loop failed: end every run."""


logger = logging.getLogger(__name__)

#: Pause between the drain's rounds while a run is stopping.
DRAIN_POLL = 0.005


class PoolLoop:
    """Run the pulling of all streams of ``pool`` in one thread."""

    def __init__(self, pool: LoopPool) -> None:
        self.pool = pool
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._urgent = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def wake(self) -> None:
        """Run a tick now (a stop starts its drain at once)."""
        self._urgent = True
        self._wake.set()

    def halt(self) -> None:
        """End the loop and wait for it (at most 2 s)."""
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def _run(self) -> None:
        pool, t = self.pool, self.pool.timing
        now = time.monotonic()
        next_pull = next_fast = now
        next_offsets = now + t.offset_poll  # first offsets: poll soon
        draining = False
        try:
            while not self._halt.is_set():
                now = time.monotonic()
                clock = pylsl.local_clock()
                # while a run is stopping every stream is pulled each round
                full = now >= next_pull or draining or self._urgent
                self._urgent = draining = False
                with pool.lock:
                    streams = list(pool.streams.values())
                    fast = now >= next_fast
                    for stream in streams:
                        if full or (fast and not stream.regular):
                            stream.pull(clock)
                            stream.settle(clock)
                    if now >= next_pull:
                        next_pull = max(next_pull + t.pull_interval, now + 0.01)
                    if fast:
                        next_fast = now + t.irregular_poll
                    if full or now >= next_offsets:
                        pending = False
                        for stream in streams:
                            pending |= stream.poll_offset(clock)
                        next_offsets = now + t.offset_poll if pending else float("inf")
                    runs = list(pool.runs)
                    for run in runs:
                        draining |= run.check_drain(pylsl.local_clock())
                for run in runs:
                    run.housekeeping(now)
                if draining:
                    wait = DRAIN_POLL
                else:
                    due = [next_pull, next_offsets, now + 0.2]
                    if any(not s.regular for s in streams):
                        due.append(next_fast)
                    wait = max(0.0, min(due) - time.monotonic())
                self._wake.wait(wait)
                self._wake.clear()
        except Exception as exc:
            logger.exception("the recorder loop failed")
            pool.fail(f"recorder failure: {exc}")
