"""The recorder's XDF output: serialised chunk writes, fsync, ENOSPC, file splitting.

Writes go straight to the file descriptor (no user-space buffer), one chunk per
``write``: a process killed with SIGKILL loses only what the pull threads had
not yet written (≤ one pull interval), and a failed write is cut back to the
last complete chunk, so the file always ends on a chunk boundary.

Compressed (``compress=True``, ``.xdf.gz``): chunks are gathered in memory and
written as one complete gzip member at every fsync (about once a second, or
when `MEMBER_MAX_BYTES` are gathered), so a SIGKILL loses at most the last
second and the file always ends on a member boundary (`recover` cuts a torn
one); stock ``gzip``/pyxdf read the members as one stream.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsl_session.errors import RecorderError
from lsl_session.fsutil import fsync_dir
from lsl_session.xdf.compressed import gzip_member
from lsl_session.xdf.writer import (
    encode_boundary,
    encode_clock_offset,
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
)

logger = logging.getLogger(__name__)

#: A compressed file writes a gzip member at the latest when this much is gathered.
MEMBER_MAX_BYTES = 64 * 1024 * 1024
#: zlib level of compressed files (1 fastest … 9 smallest); see docs/recorder.md.
COMPRESS_LEVEL = 1


class OutputFailed(RecorderError):
    """A write to the XDF file failed (disk full, I/O error); the file was cut back."""


@dataclass(slots=True)
class StreamStats:
    """What has been written for one stream (in one part, or in total)."""

    first: float | None = None
    last: float | None = None
    count: int = 0
    offsets: list[tuple[float, float]] = field(default_factory=list)

    def add(self, stamps: np.ndarray) -> None:
        """Account for a chunk of stamps that was just written."""
        if stamps.size:
            if self.first is None:
                self.first = float(stamps[0])
            self.last = float(stamps[-1])
            self.count += int(stamps.size)


@dataclass(slots=True)
class StreamEntry:
    """A stream registered with the output."""

    stream_id: int
    xml: str
    channel_format: str
    total: StreamStats = field(default_factory=StreamStats)
    part: StreamStats = field(default_factory=StreamStats)
    footer_extra: dict[str, float | str] = field(default_factory=dict)


class XdfOutput:
    """An XDF file (or a series of ``_partNNN`` files) written by many threads.

    Parameters
    ----------
    path_for_part : callable
        ``path_for_part(k)`` → the path of part ``k`` (1-based).
    split_bytes, split_seconds : float | None
        Start a new complete part file when the current one reaches this size or
        age. None disables splitting.
    file_header_extra : dict | None
        Extra FileHeader fields (writer, session id).
    """

    def __init__(
        self,
        path_for_part: Callable[[int], Path],
        *,
        split_bytes: float | None = None,
        split_seconds: float | None = None,
        file_header_extra: dict | None = None,
        first_part: int = 1,
        compress: bool = False,
        compress_level: int = COMPRESS_LEVEL,
    ) -> None:
        self._path_for_part = path_for_part
        self.compress = bool(compress)
        self.compress_level = int(compress_level)
        self._pending = bytearray()
        #: compressed files: bytes on disk up to the last complete member
        self._disk_end = 0
        #: bytes on disk, over all parts (compressed size when compressing)
        self.disk_bytes = 0
        self.split_bytes = split_bytes
        self.split_seconds = split_seconds
        self._extra = file_header_extra or {}
        self._lock = threading.RLock()
        self._streams: dict[int, StreamEntry] = {}
        self._fd: int | None = None
        self.part = first_part - 1
        self.paths: list[Path] = []
        self.part_bytes = 0
        self.total_bytes = 0
        self._part_started = 0.0
        self.closed = False
        self.failed: str | None = None
        #: ``tap(stream_id, stamps, values)`` after every written chunk (viewers)
        self.taps: list[Callable[[int, np.ndarray, Any], None]] = []
        self._open_part()

    # ----------------------------------------------------------- file parts
    def _open_part(self) -> None:
        self.part += 1
        path = self._path_for_part(self.part)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            self.failed = f"cannot create {path}: {exc.strerror}"
            raise OutputFailed(self.failed) from None
        self._fd = fd
        self.paths.append(path)
        self.part_bytes = 0
        self._disk_end = 0
        self._part_started = time.monotonic()
        self._write(encode_file_header(self._extra))
        self._write_member()
        os.fsync(fd)
        fsync_dir(path.parent)

    def _write(self, data: bytes) -> None:
        """Write one whole chunk, or cut the file back to where it started."""
        if not data:
            return
        if self.compress:
            if self._fd is None:
                raise OutputFailed(self.failed or "the XDF output has no open file")
            self._pending += data
            self.part_bytes += len(data)
            self.total_bytes += len(data)
            if len(self._pending) >= MEMBER_MAX_BYTES:
                self._write_member()
            return
        fd = self._fd
        if fd is None:
            raise OutputFailed(self.failed or "the XDF output has no open file")
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, view[written:])
        except OSError as exc:
            try:
                os.ftruncate(fd, self.part_bytes)
                os.lseek(fd, self.part_bytes, os.SEEK_SET)
            except OSError:
                logger.exception("could not cut %s back", self.paths[-1])
            self.failed = f"writing {self.paths[-1].name} failed: {exc.strerror}"
            raise OutputFailed(self.failed) from None
        self.part_bytes += len(data)
        self.total_bytes += len(data)
        self.disk_bytes += len(data)

    def _write_member(self) -> None:
        """Compressed files: write what was gathered as one complete gzip member."""
        if not self.compress or not self._pending or self._fd is None:
            return
        member = gzip_member(bytes(self._pending), self.compress_level)
        view = memoryview(member)
        written = 0
        try:
            while written < len(member):
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._disk_end)
                os.lseek(self._fd, self._disk_end, os.SEEK_SET)
            except OSError:
                logger.exception("could not cut %s back", self.paths[-1])
            self._pending.clear()
            self.failed = f"writing {self.paths[-1].name} failed: {exc.strerror}"
            raise OutputFailed(self.failed) from None
        self._disk_end += len(member)
        self.disk_bytes += len(member)
        self._pending.clear()

    def _check(self) -> None:
        if self.failed:
            raise OutputFailed(self.failed)
        if self.closed:
            raise RecorderError("the XDF output is closed")

    # -------------------------------------------------------------- streams
    def add_stream(self, stream_id: int, xml: str, channel_format: str) -> None:
        """Write a StreamHeader and start accounting for the stream."""
        with self._lock:
            self._check()
            self._write(encode_stream_header(stream_id, xml))
            self._streams[stream_id] = StreamEntry(stream_id, xml, channel_format)

    def write_samples(self, stream_id: int, stamps: np.ndarray, values) -> None:
        """Encode and write one Samples chunk (numeric values as a numpy block)."""
        entry = self._streams[stream_id]
        data = encode_samples(stream_id, stamps, values, entry.channel_format)
        with self._lock:
            self._check()
            self._write(data)
            entry.total.add(stamps)
            entry.part.add(stamps)
            self._maybe_split()
        for tap in self.taps:
            try:
                tap(stream_id, stamps, values)
            except Exception:
                logger.exception("a recorder tap failed; removed")
                self.taps.remove(tap)

    def write_clock_offset(
        self, stream_id: int, collection: float, value: float
    ) -> None:
        """Write a ClockOffset chunk and remember it for the footers."""
        with self._lock:
            if self.closed or self.failed:
                return  # a measurement that finished after stop is dropped
            entry = self._streams[stream_id]
            self._write(encode_clock_offset(stream_id, collection, value))
            entry.total.offsets.append((collection, value))
            entry.part.offsets.append((collection, value))

    def set_footer_extra(self, stream_id: int, extra: dict[str, float | str]) -> None:
        """Fields added to the stream's final footer (the stop's cutoff, end reason)."""
        with self._lock:
            self._streams[stream_id].footer_extra.update(extra)

    def write_boundary(self) -> None:
        """Write a Boundary chunk (resync point for damaged files)."""
        with self._lock:
            self._check()
            self._write(encode_boundary())

    def _maybe_split(self) -> None:
        if self.split_bytes and self.part_bytes >= self.split_bytes:
            self.next_part()
        elif (
            self.split_seconds
            and time.monotonic() - self._part_started >= self.split_seconds
        ):
            self.next_part()

    def next_part(self) -> None:
        """Finish the current part (footers) and continue in a new complete file."""
        with self._lock:
            self._check()
            self._write_footers(lambda e: e.part)
            self._close_fd()
            self._open_part()
            for entry in self._streams.values():
                self._write(encode_stream_header(entry.stream_id, entry.xml))
                last = entry.part.offsets[-1:] or entry.total.offsets[-1:]
                entry.part = StreamStats()
                for collection, value in last:
                    self._write(encode_clock_offset(entry.stream_id, collection, value))
                    entry.part.offsets.append((collection, value))

    def maybe_split_by_time(self) -> None:
        """Called periodically so an idle recording still splits on time."""
        with self._lock:
            if not (self.closed or self.failed):
                self._maybe_split()

    # --------------------------------------------------------------- finish
    def _write_footers(
        self, stats: Callable[[StreamEntry], StreamStats], *, final: bool = False
    ) -> None:
        for entry in self._streams.values():
            s = stats(entry)
            self._write(
                encode_stream_footer(
                    entry.stream_id,
                    s.first,
                    s.last,
                    s.count,
                    s.offsets,
                    extra=entry.footer_extra if final else None,
                )
            )

    def flush(self) -> None:
        """Fsync the current part (called about once a second)."""
        with self._lock:
            if self._fd is not None and not self.closed:
                if self.compress and not self.failed:
                    self._write_member()
                os.fsync(self._fd)

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                if self.compress and not self.failed:
                    try:
                        self._write_member()
                    except OutputFailed:
                        logger.error(
                            "%s ends at its last complete member", self.paths[-1]
                        )
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        """Write every stream's footer, fsync and close. Safe to call twice.

        After a failed write the footers are still attempted (the cut-back may
        have freed enough space); if they do not fit either, the file ends at
        the last complete chunk, which every reader loads.
        """
        with self._lock:
            if self.closed:
                return
            try:
                self.failed, failed = None, self.failed
                if self._fd is not None:
                    try:
                        self._write_footers(lambda e: e.part, final=True)
                    except OutputFailed:
                        logger.error(
                            "no room for the stream footers in %s", self.paths[-1]
                        )
                self.failed = self.failed or failed
                self._close_fd()
            finally:
                self.closed = True

    # ---------------------------------------------------------------- query
    def stats(self, stream_id: int) -> StreamStats:
        """Totals written for a stream over all parts."""
        return self._streams[stream_id].total
