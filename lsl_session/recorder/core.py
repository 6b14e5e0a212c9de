"""The recorder: one run of streams into one XDF file, cut by time stamp (SPEC §7)."""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pylsl

from lsl_session import __version__
from lsl_session.errors import RecorderError
from lsl_session.lsl import combine_queries, matches_query, sort_key
from lsl_session.recorder.discovery import RESCAN_SECONDS
from lsl_session.recorder.output import OutputFailed, XdfOutput
from lsl_session.recorder.pool import StreamPool
from lsl_session.recorder.run import END_FAILED, RunStream
from lsl_session.recorder.stream import PooledStream, RecorderTiming

logger = logging.getLogger(__name__)

ErrorCallback = Callable[[str, dict[str, Any]], None]

#: With a shared pool (server mode), samples are written once this old: a
#: ``stop`` line is cut at its arrival stamp, which may precede the moment the
#: server's thread sees it by its scheduling delay (measured ≤ 40 ms at load 12
#: on 2 cores); nothing stamped after the cutoff may be in the file by then.
WRITE_HOLD = 0.3

#: Longest wait for the initial streams of a pool to be resolved and opened.
READY_TIMEOUT = 30.0


class Recorder:
    """Record LSL streams into XDF with clock offsets, boundaries and footers.

    Parameters
    ----------
    path : Path
        The XDF file (parts ``<stem>_partNNN.xdf`` when splitting).
    streams : list of str | None
        LSL predicates (``name="EEG"``); None records every visible stream.
        Streams matching later (late, or a new uid without source_id) are
        added while recording.
    on_error : callable | None
        ``on_error(message, summary)`` after a failure ended the recording
        (disk full, I/O error); called from a helper thread.
    split_bytes, split_seconds : float | None
        Start a new complete part at this size/age.
    min_free_bytes : int
        Refuse to start, or stop cleanly, when the disk has less free space.
    initial_wait : float
        Seconds to wait for the initial set of streams.
    flush_interval, boundary_interval : float
        Fsync cadence (≤ 1 s), Boundary cadence.
    resolve_interval, rescan_interval : float
        Late streams (see `~lsl_session.recorder.pool.StreamPool`).
    timing : RecorderTiming | None
        Pull, offset, stop and history cadences.
    file_header_extra : dict | None
        Extra FileHeader fields.
    pool : StreamPool | None
        Streams already open (``record --control-port``): the run records the
        pool's streams and its own ``streams`` queries that are not the pool's
        are watched for the run only. None: the recorder opens its own pool
        and closes it at stop.
    start_at : float | None
        With a pool: the run holds the samples stamped from this recorder-clock
        time on (the ``start`` request's time); default: now.
    stop_grace : float | None
        Seconds a stop waits at most for a stream to pass the cutoff (default
        ``timing.stop_grace``, 2 s).

    Notes
    -----
    One loop pulls every stream (`~lsl_session.recorder.loop.PoolLoop`); each
    chunk goes to the runs whose window ``[start, cutoff)`` holds its stamps
    (recorder clock: the sender's stamp plus its latest clock offset), so with
    a shared pool every sample lands in at most one run.

    Stream ids are assigned in sorted (name, type, source_id, hostname) order
    for the initial streams, then in order of discovery. A stream that drops out
    and returns with the same source_id continues under its stream id (liblsl
    re-connects the inlet); a stream without source_id that returns is a new
    stream, because nothing identifies it as the old one.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        streams: list[str] | None = None,
        on_error: ErrorCallback | None = None,
        split_bytes: float | None = None,
        split_seconds: float | None = None,
        min_free_bytes: int = 50_000_000,
        initial_wait: float = 1.0,
        flush_interval: float = 1.0,
        boundary_interval: float = 10.0,
        resolve_interval: float = 0.5,
        rescan_interval: float = RESCAN_SECONDS,
        timing: RecorderTiming | None = None,
        file_header_extra: dict | None = None,
        first_part: int = 1,
        pool: StreamPool | None = None,
        start_at: float | None = None,
        stop_grace: float | None = None,
        compress: bool = False,
    ) -> None:
        self.compress = bool(compress)
        path = Path(path)
        if self.compress and not path.name.endswith(".gz"):
            path = path.with_name(path.name + ".gz")
        self.path = path
        self.first_part = int(first_part)
        self.queries = list(streams) if streams else None
        if pool is None:
            combine_queries(self.queries)  # an invalid query fails here
        self._on_error = on_error
        self.split_bytes = split_bytes
        self.split_seconds = split_seconds
        self.min_free_bytes = int(min_free_bytes)
        self.initial_wait = initial_wait
        self.flush_interval = min(float(flush_interval), 1.0)
        self.boundary_interval = boundary_interval
        self.resolve_interval = resolve_interval
        self.rescan_interval = rescan_interval
        self.timing = timing or (pool.timing if pool else RecorderTiming())
        self.stop_grace = float(
            self.timing.stop_grace if stop_grace is None else stop_grace
        )
        self._extra = {
            "writer": f"lsl_session {__version__}",
            **(file_header_extra or {}),
        }
        self.pool = pool
        self._own_pool = pool is None
        self._start_at = start_at
        self._window_start = -math.inf
        self.streams: dict[int, RunStream] = {}
        #: ``tap(stream_id, stamps, values)`` sees every pulled chunk (the dashboard)
        self.taps: list[Callable[[int, Any, Any], None]] = []
        self._keys: set[str] = set()
        self._lock = threading.RLock()
        self._failure: str | None = None
        self._output: XdfOutput | None = None
        self._cutoff: float | None = None
        self._drained = threading.Event()
        self._closing = False
        self.started = False
        self.stopped = False
        self.start_clock: float | None = None
        self.stop_clock: float | None = None
        self.start_time: str | None = None
        self.stop_time: str | None = None
        self._summary: dict[str, Any] | None = None
        self._done = threading.Event()
        self._next_flush = self._next_boundary = 0.0
        #: the recorder's own queries (the session's event stream)
        self.internal_queries: set[str] = set()
        #: ``on_event(event, details)`` for ``stream_source_changed`` (the session log)
        self.on_event: Callable[[str, dict[str, Any]], None] | None = None
        #: every stream of this run whose data came from another outlet (bounded)
        self.source_changes: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- start
    def start(self) -> None:
        """Check the disk, create the file, attach to the streams and record.

        Raises
        ------
        RecorderError
            If the folder cannot be created or written, or the disk is full;
            nothing is left half-started.
        """
        if self.started:
            raise RecorderError("the recorder was already started")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecorderError(
                f"cannot create {self.path.parent}: {exc.strerror}"
            ) from None
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            raise RecorderError(
                f"only {free / 1e6:.1f} MB free in {self.path.parent};"
                f" need {self.min_free_bytes / 1e6:.1f} MB to record"
            )
        self._output = XdfOutput(
            self._part_path,
            split_bytes=self.split_bytes,
            split_seconds=self.split_seconds,
            file_header_extra=self._extra,
            first_part=self.first_part,
            compress=self.compress,
        )
        self._output.taps = self.taps
        # from here on stop() releases whatever exists, so a failure below
        # leaves a closed, valid file and no threads behind
        self.started = True
        try:
            if self.pool is None:
                self.pool = StreamPool(
                    self.queries,
                    timing=self.timing,
                    initial_wait=self.initial_wait,
                    resolve_interval=self.resolve_interval,
                    rescan_interval=self.rescan_interval,
                    internal_queries=self.internal_queries,
                ).start()
            else:
                for query in self._run_queries():
                    self.pool.watch(query)
            pool = self.pool
            pool.wait_ready(READY_TIMEOUT)
            self.start_clock = pylsl.local_clock()
            if not self._own_pool:
                # a shared pool: the run holds what is stamped from the request on
                if self._start_at is not None:
                    self.start_clock = min(self._start_at, self.start_clock)
                self._window_start = self.start_clock
            ago = pylsl.local_clock() - self.start_clock
            self.start_time = (
                datetime.now().astimezone() - timedelta(seconds=ago)
            ).isoformat(timespec="microseconds")
            now = time.monotonic()
            self._next_flush = now + self.flush_interval
            self._next_boundary = now + self.boundary_interval
            with pool.lock:
                for stream in sorted(pool.streams.values(), key=_info_key):
                    self._register(stream)
                    if self._own_pool:  # nothing else will attach: no history
                        stream.drop_history()
                pool.add_run(self)
        except BaseException:
            self.stop()
            raise
        logger.info("recording %d stream(s) into %s", len(self.streams), self.path)

    def _run_queries(self) -> list[str]:
        """This run's queries that the shared pool does not already have."""
        have = set(self.pool.queries or ()) if self.pool else set()
        if self.pool is not None and self.pool.queries is None:
            return sorted(self.internal_queries)
        return [q for q in self.queries or () if q not in have]

    def _part_path(self, part: int) -> Path:
        if part <= 1:
            return self.path
        return self.path.with_name(part_name(self.path.name, part))

    def _wants(self, stream: PooledStream) -> bool:
        """A shared pool's stream belongs to this run unless another run watches it."""
        if self._own_pool:
            return True
        info = stream.info
        mine = self._run_queries()
        if any(matches_query(info, q) for q in mine):
            return True
        others = [q for q in self.pool.watched() if q not in mine]
        return not any(matches_query(info, q) for q in others)

    def _register(self, stream: PooledStream) -> RunStream | None:
        """Give a pooled stream the next id, write its header, attach (pool lock held)."""
        if stream.key in self._keys or not self._wants(stream):
            return None
        stream_id = len(self.streams) + 1
        self._output.add_stream(stream_id, stream.xml, stream.channel_format)
        run_stream = RunStream(
            stream_id, stream, self._output, self._window_start, self._fail
        )
        if not self._own_pool:  # a remote stop's cut may come after its time
            run_stream.hold = WRITE_HOLD
        run_stream.internal = any(
            matches_query(stream.info, q) for q in self.internal_queries
        )
        self._keys.add(stream.key)
        self.streams[stream_id] = run_stream
        stream.attach(run_stream)
        if stream.offset_known:  # this file's own first offset, from its start
            run_stream.offset(
                pylsl.local_clock() - stream.last_offset, stream.last_offset
            )
        return run_stream

    def on_stream(self, stream: PooledStream) -> None:
        """A stream the pool opened while recording (pool lock held)."""
        if self._cutoff is not None or self._closing or self._failure:
            return
        try:
            run_stream = self._register(stream)
        except OutputFailed as exc:
            self._fail(str(exc))
            return
        if self._own_pool:
            stream.drop_history()
        if run_stream is not None:
            logger.info(
                "late stream %s recorded as id %d", stream.name, run_stream.stream_id
            )

    # ---------------------------------------------------------- the file
    def housekeeping(self, now: float) -> None:
        """Fsync about once a second, boundaries, splitting by time, disk check."""
        out = self._output
        if out is None or self._closing or self._failure:
            return
        try:
            if now >= self._next_flush:
                out.flush()
                self._next_flush = now + self.flush_interval
                self._check_disk()
            if now >= self._next_boundary:
                out.write_boundary()
                self._next_boundary = now + self.boundary_interval
            out.maybe_split_by_time()
        except OutputFailed as exc:
            self._fail(str(exc))
        except RecorderError:
            if not self._closing:
                raise

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            self._fail(
                f"disk almost full ({free / 1e6:.1f} MB free in {self.path.parent});"
                " recording stopped"
            )

    def fail(self, message: str) -> None:
        """The pool failed: end the recording (see `_fail`)."""
        self._fail(message)

    def _fail(self, message: str) -> None:
        """End the recording because of ``message``; report it once."""
        with self._lock:
            if self._failure or self.stopped:
                return
            self._failure = message
        logger.error("%s", message)
        threading.Thread(
            target=self._stop_after_failure, name="recorder-fail", daemon=True
        ).start()

    def _stop_after_failure(self) -> None:
        summary = self.stop()
        if self._on_error is not None:
            self._on_error(self._failure or "recording failed", summary)

    # ----------------------------------------------------------------- stop
    def cut(self, cutoff: float) -> None:
        """Keep only samples stamped before ``cutoff`` (recorder clock); earliest wins.

        The stop's drain then runs in the pool's loop; `stop` waits for it.
        """
        pool = self.pool
        if pool is None:
            return
        with pool.lock:
            if self._cutoff is not None and self._cutoff <= cutoff:
                return
            self._cutoff = cutoff
            for run_stream in self.streams.values():
                run_stream.cut(cutoff)
        pool.loop.wake()

    def check_drain(self, now: float) -> bool:
        """End the streams that passed the cutoff or ran out of grace (pool lock held).

        Returns
        -------
        bool
            True while some stream is still draining.
        """
        if self._cutoff is None:
            return False
        draining = False
        for run_stream in self.streams.values():
            if not run_stream.check_end(now, self.stop_grace):
                draining = True
        if not draining:
            self._drained.set()
        return draining

    def stop(self, cutoff: float | None = None) -> dict[str, Any]:
        """Cut at ``cutoff`` (default now), drain, write footers, close; return the summary.

        Parameters
        ----------
        cutoff : float | None
            The stop request's ``pylsl.local_clock()`` time: samples stamped
            from then on are not in this recording. Each stream is drained
            until it delivers a sample stamped at or after the cutoff, or the
            grace runs out (``stop_grace``).

        Notes
        -----
        Safe to call twice and from several threads: a call that finds another
        one stopping waits for it and returns the same summary.
        """
        with self._lock:
            first = not self.stopped
            self.stopped = True
        if not first:  # another thread is stopping: wait for its summary
            self._done.wait(self.stop_grace + 5.0)
            return self._summary or {}
        try:
            return self._stop_once(cutoff)
        finally:
            self._done.set()

    def _stop_once(self, cutoff: float | None) -> dict[str, Any]:
        if not self.started:
            self._summary = {"xdf_files": [], "streams": []}
            return self._summary
        pool = self.pool
        if pool is not None:
            self.cut(pylsl.local_clock() if cutoff is None else cutoff)
            if self._failure is None and pool.alive and self.streams:
                self._drained.wait(self.stop_grace + 1.0)
            self.stop_clock = self._cutoff
            ago = pylsl.local_clock() - self._cutoff
            self.stop_time = (
                datetime.now().astimezone() - timedelta(seconds=max(0.0, ago))
            ).isoformat(timespec="microseconds")
            with pool.lock:
                self._closing = True
                for run_stream in self.streams.values():
                    run_stream.force_end(END_FAILED if self._failure else "stopped")
                    run_stream.source.detach(run_stream)
                pool.remove_run(self)
        self._closing = True
        self._output.close()
        if pool is not None:
            if self._own_pool:
                pool.close()
            else:
                for query in self._run_queries():
                    pool.unwatch(query)
        self._summary = self.summary()
        logger.info("recording stopped: %s", self.path)
        return self._summary

    # --------------------------------------------------------------- status
    def unmatched_queries(self) -> list[str]:
        """The caller's queries that have not matched any recorded stream."""
        infos = [s.info for s in list(self.streams.values())]
        return [
            q
            for q in self.queries or []
            if q not in self.internal_queries
            and not any(matches_query(i, q) for i in infos)
        ]

    def on_source_change(self, change: dict[str, Any]) -> None:
        """A stream's data now comes from another outlet (the pool's watcher thread)."""
        stream = next(
            (
                s
                for s in list(self.streams.values())
                if s.source_id == change["source_id"] and not s.ended
            ),
            None,
        )
        if stream is None or self.stopped:
            return
        change = {**change, "stream_id": stream.stream_id}
        jump = stream.discontinuity_of(change["old_uid"])
        if jump is not None:
            change["discontinuity"] = jump
        if len(self.source_changes) < 1000:
            self.source_changes.append(change)
        if self.on_event is not None:
            try:
                self.on_event("stream_source_changed", change)
            except Exception:
                logger.exception("logging a source change failed")

    @property
    def failure(self) -> str | None:
        """Why the recording ended early, if it did."""
        return self._failure

    def split(self) -> Path:
        """Close the current file and go on in the next part, now.

        Every sample lands in exactly one part (parts are cut between chunks).

        Returns
        -------
        Path
            The new part file.
        """
        if self._output is None or not self.started or self.stopped:
            raise RecorderError("not recording: nothing to split")
        self._output.next_part()
        return self._output.paths[-1]

    def status(self) -> dict[str, Any]:
        """Live status: per stream samples, rate, lag, gaps; file size; disk free."""
        now = pylsl.local_clock()
        out = self._output
        return {
            "recording": self.started and not self.stopped,
            "file": str(out.paths[-1]) if out else None,
            "parts": len(out.paths) if out else 0,
            "bytes": out.disk_bytes if out else 0,
            "disk_free": shutil.disk_usage(self.path.parent).free,
            "elapsed_s": None
            if self.start_clock is None
            else round(now - self.start_clock, 3),
            "failure": self._failure,
            "streams": [s.status(now) for s in list(self.streams.values())],
        }

    def summary(self) -> dict[str, Any]:
        """What was recorded (file names relative to the file's folder)."""
        out = self._output
        return {
            "xdf_files": [p.name for p in out.paths] if out else [],
            "bytes": out.disk_bytes if out else 0,
            "queries": self.queries,
            "start_lsl_time": self.start_clock,
            "stop_lsl_time": self.stop_clock,
            "cutoff_lsl_time": self._cutoff,
            "stop_grace_s": self.stop_grace,
            "start_time": self.start_time,
            "stop_time": self.stop_time,
            "error": self._failure,
            "unmatched_queries": self.unmatched_queries(),
            "source_changes": list(self.source_changes),
            "shared_sources": list(self.pool.shared_sources) if self.pool else [],
            "streams": [s.summary() for s in self.streams.values()],
        }


def part_name(name: str, part: int) -> str:
    """``x.xdf`` → ``x_part002.xdf``; ``x.xdf.gz`` → ``x_part002.xdf.gz``."""
    for suffix in (".xdf.gz", ".xdfz", ".xdf"):
        if name.lower().endswith(suffix):
            return f"{name[: -len(suffix)]}_part{part:03d}{name[-len(suffix) :]}"
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_part{part:03d}.{suffix}" if dot else f"{name}_part{part:03d}"


def _info_key(stream: PooledStream) -> tuple[str, ...]:
    return sort_key(stream.info)
