"""The streams a control server keeps open between runs, and the times runs are cut at.

LabRecorder resolves and opens every stream at each ``start``, so the first
second of every run is lost to a client that does not wait. Here the selected
streams stay open (one `~lsl_session.recorder.pool.StreamPool` per selection),
their last seconds are kept, and a ``start`` records what is stamped from the
moment its line arrived; a ``stop`` cuts at the moment its line arrived.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import Any

import pylsl

from lsl_session.errors import RecorderError
from lsl_session.recorder.pool import StreamPool
from lsl_session.recorder.stream import RecorderTiming

logger = logging.getLogger(__name__)

#: Seconds after the last selection change before its streams are opened.
WARM_DELAY = 0.3

#: A ``start`` that arrives at most this long after the previous ``stop``'s
#: cutoff, or before that stop's reply went out, begins exactly at that cutoff:
#: the two runs meet, no sample is lost or recorded twice. It covers a client
#: that sends ``stop``, ``filename`` and ``start`` without reading replies,
#: whose later lines TCP may hold back for a delayed ACK (Nagle: ~40 ms).
BACK_TO_BACK_S = 0.045
#: A ``stop`` replies no sooner than this after its cutoff, so a client that
#: reads the reply before its next ``start`` is never taken for one that does not.
MIN_STOP_REPLY_S = 0.05


class OpenStreams:
    """One pool of open streams for the current selection, and the run boundaries.

    Parameters
    ----------
    recorder_options : dict
        The server's recorder options (``timing``, ``stop_grace``,
        ``initial_wait`` are used for the pool).
    """

    def __init__(self, recorder_options: dict[str, Any]) -> None:
        self._options = recorder_options
        self.pool: StreamPool | None = None
        self._retired: list[StreamPool] = []
        self._lock = threading.Lock()
        self.last_cutoff: float | None = None
        self._stop_done: float | None = None
        self._timer: threading.Timer | None = None
        self._closed = False

    def _timing(self) -> RecorderTiming:
        timing = self._options.get("timing") or RecorderTiming()
        grace = self._options.get("stop_grace")
        if grace is not None:
            timing = dataclasses.replace(timing, stop_grace=float(grace))
        return timing

    def pool_for(self, queries: list[str] | None) -> StreamPool:
        """The open pool for ``queries`` (None: every stream), made if needed."""
        want = list(queries) if queries else None
        with self._lock:
            pool = self.pool
            if pool is not None and pool.alive and pool.queries == want:
                return pool
            if self._closed:
                raise RecorderError("the control server is closing")
            if pool is not None:
                self._retire(pool)
            self.pool = StreamPool(
                want,
                timing=self._timing(),
                initial_wait=self._options.get("initial_wait", 1.0),
            ).start()
            logger.info("control: keeping %s open between runs", want or "every stream")
            return self.pool

    def warm(self, queries: list[str] | None) -> None:
        """Open the streams of ``queries`` soon (in the background).

        Selection lines often come in a burst (``select none``, then one
        ``select`` per query): the pool is made `WARM_DELAY` after the last.
        """
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(WARM_DELAY, self._warm_now, (queries,))
            self._timer.daemon = True
            self._timer.start()

    def _warm_now(self, queries: list[str] | None) -> None:
        try:
            self.pool_for(queries)
        except Exception:
            logger.exception("control: opening the selected streams failed")

    def _retire(self, pool: StreamPool) -> None:
        if pool.runs:  # a run still drains from it: closed after its stop
            self._retired.append(pool)
        else:
            threading.Thread(target=pool.close, name="pool-close", daemon=True).start()

    def open_names(self) -> list[str]:
        """Names of the streams open now (kept open between runs)."""
        pool = self.pool
        if pool is None:
            return []
        with pool.lock:
            return sorted(s.name for s in pool.streams.values())

    # ------------------------------------------------------------ run times
    def start_time(self, received: float | None) -> float:
        """The first stamp of a run whose ``start`` arrived at ``received``.

        Within `BACK_TO_BACK_S` of the previous stop's cutoff, or before that
        stop's reply: that cutoff. Else its own arrival.
        """
        now = pylsl.local_clock()
        start = now if received is None else min(received, now)
        last = self.last_cutoff
        if last is None:
            return start
        replied = self._stop_done if self._stop_done is not None else math.inf
        if start - last <= BACK_TO_BACK_S or start < replied:
            return last
        return start

    @staticmethod
    def cutoff(received: float | None) -> float:
        """The cutoff of a ``stop`` that arrived at ``received`` (default: now)."""
        now = pylsl.local_clock()
        return now if received is None else min(received, now)

    def stopping(self, cutoff: float) -> None:
        """A stop with ``cutoff`` began (a start right after it continues there)."""
        self.last_cutoff = cutoff
        self._stop_done = None

    def stopped(self) -> None:
        """The stop is done: its reply goes out now, no sooner than
        `MIN_STOP_REPLY_S` after the cutoff. Retired pools are closed."""
        if self.last_cutoff is not None and self._stop_done is None:
            wait = self.last_cutoff + MIN_STOP_REPLY_S - pylsl.local_clock()
            if wait > 0:
                time.sleep(wait)
        self._stop_done = pylsl.local_clock()
        with self._lock:
            idle = [p for p in self._retired if not p.runs]
            self._retired = [p for p in self._retired if p.runs]
        for pool in idle:
            pool.close()

    def close(self) -> None:
        """Close every pool (the server ends)."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            pools = [*self._retired, *([self.pool] if self.pool else [])]
            self._retired, self.pool = [], None
        for pool in pools:
            pool.close()
