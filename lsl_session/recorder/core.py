"""The recorder: resolve streams, record each into one XDF file, stop cleanly (SPEC §7)."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pylsl

from lsl_session import __version__
from lsl_session.errors import RecorderError
from lsl_session.lsl import (
    combine_queries,
    explain_unmatched,
    format_name,
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
    settled_results,
)
from lsl_session.recorder.loop import PullLoop
from lsl_session.recorder.output import OutputFailed, XdfOutput
from lsl_session.recorder.stream import RecordedStream, RecorderTiming

logger = logging.getLogger(__name__)

ErrorCallback = Callable[[str, dict[str, Any]], None]


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
        Late streams: liblsl's continuous resolver is polled every
        ``resolve_interval`` during the first ``rescan_interval`` and as long
        as a query has matched no stream; after that (every query matched, or
        no queries) a one-shot resolve runs every ``rescan_interval``
        (LabRecorder's cadence) and the continuous resolver is closed.
    timing : RecorderTiming | None
        Pull, offset and drain cadences.
    file_header_extra : dict | None
        Extra FileHeader fields.

    Notes
    -----
    Two threads record: one loop pulls every stream, writes the clock offsets
    and keeps the file (fsync, boundaries, splitting, disk checks; see
    `~lsl_session.recorder.loop.PullLoop`), and one watches for late streams
    and opens their inlets, which may block.

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
    ) -> None:
        self.path = Path(path)
        self.first_part = int(first_part)
        self.queries = list(streams) if streams else None
        self._predicate = combine_queries(self.queries)
        self._on_error = on_error
        self.split_bytes = split_bytes
        self.split_seconds = split_seconds
        self.min_free_bytes = int(min_free_bytes)
        self.initial_wait = initial_wait
        self.flush_interval = min(float(flush_interval), 1.0)
        self.boundary_interval = boundary_interval
        self.resolve_interval = resolve_interval
        self.rescan_interval = rescan_interval
        self.timing = timing or RecorderTiming()
        self._extra = {
            "writer": f"lsl_session {__version__}",
            **(file_header_extra or {}),
        }
        self.streams: dict[int, RecordedStream] = {}
        #: ``tap(stream_id, stamps, values)`` sees every pulled chunk (the dashboard)
        self.taps: list[Callable[[int, Any, Any], None]] = []
        self._keys: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._failure: str | None = None
        self._output: XdfOutput | None = None
        self._resolver: pylsl.ContinuousResolver | None = None
        self._loop: PullLoop | None = None
        self._watcher: threading.Thread | None = None
        self.started = False
        self.stopped = False
        self.start_clock: float | None = None
        self.stop_clock: float | None = None
        self.start_time: str | None = None
        self.stop_time: str | None = None
        self._summary: dict[str, Any] | None = None
        self._done = threading.Event()
        self._retry_after: dict[str, float] = {}
        #: queries that matched a recorded stream; the recorder's own ones
        self._matched: set[str] = set()
        self.internal_queries: set[str] = set()

    # ---------------------------------------------------------------- start
    def start(self) -> None:
        """Check the disk, create the file, resolve and start recording.

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
        self._resolver = continuous_resolver(self._predicate)
        self._output = XdfOutput(
            self._part_path,
            split_bytes=self.split_bytes,
            split_seconds=self.split_seconds,
            file_header_extra=self._extra,
            first_part=self.first_part,
        )
        self._output.taps = self.taps
        # from here on stop() releases whatever exists, so a failure below
        # leaves a closed, valid file and no threads behind
        self.started = True
        try:
            initial = self._initial_streams()
            for info in sorted(initial, key=sort_key):
                opened = self._open_inlet(info)
                if opened is not None:
                    with self._lock:
                        self._register(info, *opened)
            # the recording starts when the streams are opened and pulled
            self.start_clock = pylsl.local_clock()
            self.start_time = (
                datetime.now().astimezone().isoformat(timespec="microseconds")
            )
            self._loop = PullLoop(
                self._output,
                self.timing,
                flush_interval=self.flush_interval,
                boundary_interval=self.boundary_interval,
                check_disk=self._check_disk,
                on_failure=self._fail,
            )
            self._loop.start(list(self.streams.values()))
            self._watcher = threading.Thread(
                target=self._watch, name="recorder-watch", daemon=True
            )
            self._watcher.start()
        except BaseException:
            self.stop()
            raise
        logger.info("recording %d stream(s) into %s", len(self.streams), self.path)

    def _part_path(self, part: int) -> Path:
        if part <= 1:
            return self.path
        return self.path.with_name(f"{self.path.stem}_part{part:03d}{self.path.suffix}")

    def _initial_streams(self) -> list[pylsl.StreamInfo]:
        """Wait until every query matched and the answers settled, or ``initial_wait``.

        Answers to a resolve arrive over a few tens of ms; stopping at the first
        match of a broad query would leave the rest to the late-stream path, with
        stream ids in arrival order instead of sorted order.
        """
        found = settled_results(self._resolver, self.queries, self.initial_wait)
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
        return found

    def _open_inlet(
        self, info: pylsl.StreamInfo
    ) -> tuple[pylsl.StreamInlet, pylsl.StreamInfo] | None:
        return open_inlet(info)

    def _register(
        self, info: pylsl.StreamInfo, inlet: pylsl.StreamInlet, full: pylsl.StreamInfo
    ) -> RecordedStream | None:
        """Give an opened stream the next id and write its header (hold the lock)."""
        key = stream_key(info)
        if key in self._keys:
            return None
        stream_id = len(self.streams) + 1
        self._output.add_stream(stream_id, full.as_xml(), format_name(full))
        stream = RecordedStream(stream_id, inlet, full, self._output, self.timing)
        self._keys.add(key)
        self.streams[stream_id] = stream
        self._matched.update(q for q in self.queries or [] if matches_query(info, q))
        return stream

    # --------------------------------------------------------- late streams
    def _watch(self) -> None:
        """Find late streams (see ``resolve_interval``) and add them."""
        # late answers to the initial resolve (a busy machine) still come in
        # through the continuous resolver during the first rescan interval
        next_rescan = time.monotonic() + self.rescan_interval
        while not self._stop.wait(self.resolve_interval):
            try:
                resolver = self._resolver
                if (
                    resolver is not None
                    and time.monotonic() >= next_rescan
                    and not self._unmatched()
                ):
                    # every query has its stream: stop liblsl's continuous
                    # resolve waves and rescan at LabRecorder's cadence
                    self._resolver = resolver = None
                if resolver is not None:
                    found = resolver.results()
                elif time.monotonic() >= next_rescan:
                    found = self._rescan()
                    next_rescan = time.monotonic() + self.rescan_interval
                else:
                    continue
                self._pick_up_late_streams(found)
            except OutputFailed as exc:
                self._fail(str(exc))
                return
            except Exception as exc:
                logger.exception("watching for late streams failed")
                self._fail(f"recorder failure: {exc}")
                return

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            self._fail(
                f"disk almost full ({free / 1e6:.1f} MB free in {self.path.parent});"
                " recording stopped"
            )

    def _unmatched(self) -> list[str]:
        """Every query (the recorder's own too) that no recorded stream matches yet."""
        return [q for q in self.queries or () if q not in self._matched]

    def _rescan(self) -> list[pylsl.StreamInfo]:
        return [] if self._stop.is_set() else rescan(self._predicate)

    def _pick_up_late_streams(self, found: list[pylsl.StreamInfo]) -> None:
        now = time.monotonic()
        new = [
            i
            for i in found
            if stream_key(i) not in self._keys
            and self._retry_after.get(stream_key(i), 0.0) <= now
        ]
        for info in sorted(new, key=sort_key):
            if self._stop.is_set():
                return
            opened = self._open_inlet(info)
            if opened is None:  # e.g. its data port is firewalled: retry later
                self._retry_after[stream_key(info)] = time.monotonic() + 5.0
                continue
            with self._lock:
                if self._stop.is_set():
                    return
                stream = self._register(info, *opened)
                if stream is not None:
                    self._loop.add(stream)
                    logger.info(
                        "late stream %s recorded as id %d",
                        stream.name,
                        stream.stream_id,
                    )

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
    def stop(self) -> dict[str, Any]:
        """Drain every stream, write footers, fsync, close; return the summary.

        Safe to call twice and from several threads: a call that finds another
        one stopping waits for it and returns the same summary.
        """
        with self._lock:
            first = not self.stopped
            self.stopped = True
            self._stop.set()
        if not first:  # another thread is stopping: wait for its summary
            self._done.wait(5.0)
            return self._summary or {}
        try:
            return self._stop_once()
        finally:
            self._done.set()

    def _stop_once(self) -> dict[str, Any]:
        if not self.started:
            self._summary = {"xdf_files": [], "streams": []}
            return self._summary
        self.stop_clock = pylsl.local_clock()
        self.stop_time = datetime.now().astimezone().isoformat(timespec="microseconds")
        if self._loop is not None:
            self._loop.halt(self.stop_clock)
            self._loop.join(timeout=self.timing.drain_deadline + 0.5)
        self._output.close()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(1.0)
        self._resolver = None
        self._summary = self.summary()
        logger.info("recording stopped: %s", self.path)
        return self._summary

    # --------------------------------------------------------------- status
    def unmatched_queries(self) -> list[str]:
        """The caller's queries that have not matched any recorded stream."""
        return [
            q
            for q in self.queries or []
            if q not in self._matched and q not in self.internal_queries
        ]

    @property
    def failure(self) -> str | None:
        """Why the recording ended early, if it did."""
        return self._failure

    def status(self) -> dict[str, Any]:
        """Live status: per stream samples, rate, lag, gaps; file size; disk free."""
        now = pylsl.local_clock()
        out = self._output
        return {
            "recording": self.started and not self.stopped,
            "file": str(out.paths[-1]) if out else None,
            "parts": len(out.paths) if out else 0,
            "bytes": out.total_bytes if out else 0,
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
            "bytes": out.total_bytes if out else 0,
            "queries": self.queries,
            "start_lsl_time": self.start_clock,
            "stop_lsl_time": self.stop_clock,
            "start_time": self.start_time,
            "stop_time": self.stop_time,
            "error": self._failure,
            "unmatched_queries": self.unmatched_queries(),
            "streams": [s.summary() for s in self.streams.values()],
        }
