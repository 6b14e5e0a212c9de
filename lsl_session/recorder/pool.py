"""The open streams a recorder pulls, kept open across runs in server mode.

A `StreamPool` resolves the streams matching its queries, opens their inlets,
picks up late streams, and runs the one pull loop (`PoolLoop`). Runs (each a
`~lsl_session.recorder.core.Recorder`) attach to it: every pulled chunk goes to
the runs whose window holds its stamps. ``record`` without remote control makes
a pool per recording; ``record --control-port`` keeps one pool for the whole
server, so a ``start`` finds its streams already open and their last seconds
pulled (instant start, see docs/remote-control.md).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

import pylsl

from lsl_session.lsl import (
    combine_queries,
    explain_unmatched,
    matches_query,
    resolve_all,
    sort_key,
    stream_key,
)
from lsl_session.recorder.discovery import (
    RESCAN_SECONDS,
    continuous_resolver,
    open_inlet,
    rescan,
    resolve_query,
    settled_results,
)
from lsl_session.recorder.loop import PoolLoop
from lsl_session.recorder.sources import shared_source_ids, source_changes
from lsl_session.recorder.stream import PooledStream, RecorderTiming
from lsl_session.source_change import describe_change

if TYPE_CHECKING:
    from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: Seconds an extra (per-run) query is resolved for on each watch round.
EXTRA_RESOLVE_WAIT = 0.2
#: Inlets open in parallel (a thread each, at most `MAX_OPENING` at once); a
#: round waits this long for them, once. A stream still opening then (a dead or
#: firewalled peer: liblsl's 5 s timeouts) is added when it opens, or retried.
OPEN_WAIT = 0.5
MAX_OPENING = 32
#: Seconds before a stream that could not be opened is tried again.
RETRY_AFTER = 5.0


class PoolRun(Protocol):
    """What the pool needs from an attached run."""

    def on_stream(self, stream: PooledStream) -> None:
        """A stream was opened (under the pool lock)."""

    def check_drain(self, now: float) -> bool:
        """Evaluate the stop; True while still draining (under the pool lock)."""

    def housekeeping(self, now: float) -> None:
        """Fsync, boundaries, splitting, disk check (not under the pool lock)."""

    def fail(self, message: str) -> None:
        """The loop failed: end the run."""


class StreamPool:
    """Open inlets for every stream matching ``queries`` and pull them in one loop.

    Parameters
    ----------
    queries : list of str | None
        LSL predicates; None opens every visible stream.
    timing : RecorderTiming | None
        Pull, offset, stop and history cadences.
    initial_wait : float
        Seconds to wait for the initial set of streams.
    resolve_interval, rescan_interval : float
        Late streams: liblsl's continuous resolver is polled every
        ``resolve_interval`` during the first ``rescan_interval`` and as long as
        a query has matched no stream; after that a one-shot resolve runs every
        ``rescan_interval`` (LabRecorder's cadence).
    internal_queries : iterable of str
        Queries of the recorder's own (not reported as unmatched by users).

    Notes
    -----
    `lock` guards the streams, the runs and every inlet call; the loop holds it
    while it pulls and hands chunks out, so a run attaching under it sees every
    chunk exactly once (history, then live).
    """

    def __init__(
        self,
        queries: list[str] | None,
        *,
        timing: RecorderTiming | None = None,
        initial_wait: float = 1.0,
        resolve_interval: float = 0.5,
        rescan_interval: float = RESCAN_SECONDS,
        internal_queries: Iterable[str] = (),
    ) -> None:
        self.queries = list(queries) if queries else None
        self._predicate = combine_queries(self.queries)
        self.timing = timing or RecorderTiming()
        self.initial_wait = initial_wait
        self.resolve_interval = resolve_interval
        self.rescan_interval = rescan_interval
        self.internal_queries = set(internal_queries)
        self.lock = threading.RLock()
        self.streams: dict[str, PooledStream] = {}
        self.runs: list[PoolRun] = []
        self._extra: dict[str, bool] = {}  # per-run query → matched
        self._released: set[str] = set()
        self._matched: set[str] = set()
        self._retry_after: dict[str, float] = {}
        self._opening: set[str] = set()
        self._resolver: pylsl.ContinuousResolver | None = None
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._watcher: threading.Thread | None = None
        self.loop = PoolLoop(self)
        self.failure: str | None = None
        #: outlets sharing a source_id or a name at the initial resolve (warnings)
        self.shared_sources: list[str] = []

    # --------------------------------------------------------------- life
    def start(self) -> StreamPool:
        """Start resolving (in the background) and the pull loop; returns at once."""
        self._resolver = continuous_resolver(self._predicate)
        self.loop.start()
        self._watcher = threading.Thread(
            target=self._watch, name="recorder-watch", daemon=True
        )
        self._watcher.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the initial streams to be resolved and opened."""
        return self._ready.wait(timeout)

    @property
    def alive(self) -> bool:
        """True until closed or failed."""
        return not self._closed.is_set() and self.failure is None

    def close(self) -> None:
        """Stop the loop and the watcher, close every inlet; safe twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.loop.halt()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(2.0)
        with self.lock:
            for stream in self.streams.values():
                stream.close()
            self._resolver = None

    # --------------------------------------------------------------- runs
    def add_run(self, run: PoolRun) -> None:
        """Tell ``run`` about streams opened from now on; drive its housekeeping."""
        with self.lock:
            self.runs.append(run)

    def remove_run(self, run: PoolRun) -> None:
        """Forget ``run`` (it detached its streams)."""
        with self.lock:
            if run in self.runs:
                self.runs.remove(run)

    def watch(self, query: str) -> None:
        """Also open streams matching ``query`` (a run's own event stream)."""
        with self.lock:
            self._extra.setdefault(query, False)
            for stream in self.streams.values():
                if matches_query(stream.info, query):
                    self._extra[query] = True

    def watched(self) -> list[str]:
        """The per-run queries being watched."""
        with self.lock:
            return list(self._extra)

    def unwatch(self, query: str) -> None:
        """Close the streams only ``query`` wanted; never open them again."""
        with self.lock:
            self._extra.pop(query, None)
            for key, stream in list(self.streams.items()):
                if matches_query(stream.info, query) and not stream.sinks:
                    stream.close()
                    del self.streams[key]
                    self._released.add(key)

    def unmatched(self) -> list[str]:
        """Queries (internal ones too) that no open stream matches yet."""
        return [q for q in self.queries or () if q not in self._matched]

    # ----------------------------------------------------------- discovery
    def _initial(self) -> None:
        found = settled_results(self._resolver, self.queries, self.initial_wait)
        self.shared_sources = shared_source_ids(found)
        for line in self.shared_sources:
            logger.warning("%s", line)
        missing = [
            q
            for q in self.queries or []
            if q not in self.internal_queries
            and not any(matches_query(i, q) for i in found)
        ]
        if missing:
            visible = [
                i
                for i in resolve_all(0.5)
                if not any(matches_query(i, q) for q in self.internal_queries)
            ]
            for q in missing:
                logger.warning("%s; watching for it", explain_unmatched(q, visible))
        self._open_new(found)

    def _watch(self) -> None:
        """The initial resolve, then late streams (see ``resolve_interval``)."""
        try:
            self._initial()
        except Exception:
            logger.exception("the initial resolve failed")
        finally:
            self._ready.set()
        # late answers to the initial resolve (a busy machine) still come in
        # through the continuous resolver during the first rescan interval
        next_rescan = time.monotonic() + self.rescan_interval
        while not self._closed.wait(self.resolve_interval):
            try:
                self._open_extra()
                resolver = self._resolver
                if (
                    resolver is not None
                    and time.monotonic() >= next_rescan
                    and not self.unmatched()
                ):
                    # every query has its stream: stop liblsl's continuous
                    # resolve waves and rescan at LabRecorder's cadence
                    self._resolver = resolver = None
                if resolver is not None:
                    found = resolver.results()
                elif time.monotonic() >= next_rescan:
                    found = rescan(self._predicate)
                    next_rescan = time.monotonic() + self.rescan_interval
                else:
                    continue
                self._check_sources(found, fresh=resolver is None)
                self._open_new(found)
            except Exception as exc:
                logger.exception("watching for late streams failed")
                self.fail(f"recorder failure: {exc}")
                return

    def _check_sources(self, found: list[pylsl.StreamInfo], *, fresh: bool) -> None:
        """Tell the runs about every stream whose data now comes from another outlet."""
        with self.lock:
            changes = source_changes(
                list(self.streams.values()), found, pylsl.local_clock(), fresh=fresh
            )
            runs = list(self.runs)
        for change in changes:  # the runs log it (fsync): not under the lock
            logger.warning("%s", describe_change(change))
            for run in runs:
                notify = getattr(run, "on_source_change", None)
                if notify is not None:
                    notify(change)

    def _open_extra(self) -> None:
        for query in [q for q, matched in list(self._extra.items()) if not matched]:
            if self._closed.is_set():
                return
            self._open_new(resolve_query(query, EXTRA_RESOLVE_WAIT))

    def _open_new(self, found: list[pylsl.StreamInfo]) -> None:
        """Open the new streams in ``found`` in parallel; wait `OPEN_WAIT` once."""
        now = time.monotonic()
        threads = []
        with self.lock:
            for info in sorted(found, key=sort_key):
                key = stream_key(info)
                if (
                    key in self.streams
                    or key in self._released
                    or key in self._opening
                    or self._retry_after.get(key, 0.0) > now
                    or len(self._opening) >= MAX_OPENING
                ):
                    continue
                self._opening.add(key)
                threads.append(
                    threading.Thread(
                        target=self._open_one,
                        args=(info,),
                        name="recorder-open",
                        daemon=True,
                    )
                )
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + OPEN_WAIT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _open_one(self, info: pylsl.StreamInfo) -> None:
        """Open one inlet (its own thread: liblsl may block for seconds), adopt it."""
        key = stream_key(info)
        try:
            opened = None if self._closed.is_set() else open_inlet(info)
            if opened is None:  # e.g. its data port is firewalled: retry later
                with self.lock:
                    self._retry_after[key] = time.monotonic() + RETRY_AFTER
                return
            self._adopt(info, *opened)
        except Exception:
            logger.exception("opening stream %s failed", info.name())
        finally:
            with self.lock:
                self._opening.discard(key)

    def _adopt(
        self, info: pylsl.StreamInfo, inlet: pylsl.StreamInlet, full: pylsl.StreamInfo
    ) -> None:
        """Add an opened stream and tell the runs (takes the lock)."""
        with self.lock:
            key = stream_key(info)
            if self._closed.is_set() or key in self.streams:
                inlet.close_stream()
                return
            stream = PooledStream(inlet, full, self.timing)
            self.streams[key] = stream
            self._matched.update(
                q for q in self.queries or [] if matches_query(info, q)
            )
            for q in self._extra:
                if matches_query(info, q):
                    self._extra[q] = True
            # starts liblsl's time thread: the first estimate comes ~0.5 s later
            stream.poll_offset(pylsl.local_clock())
            for run in list(self.runs):
                run.on_stream(stream)

    def fail(self, message: str) -> None:
        """End every attached run with ``message`` (the pool is dead)."""
        self.failure = message
        logger.error("%s", message)
        for run in list(self.runs):
            run.fail(message)
