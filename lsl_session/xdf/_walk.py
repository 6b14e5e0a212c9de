"""Tolerant XDF chunk framing walker: never raises on garbage, always progresses."""

from __future__ import annotations

import io
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from lsl_session.limits import BoundedList

from ._format import (
    BOUNDARY_UUID,
    MAGIC,
    MIN_LENGTH,
    STREAM_TAGS,
    ChunkError,
    ChunkTag,
    XdfFormatError,
    decode_varlen,
)
from .compressed import Inflated, file_compression, open_inflated

logger = logging.getLogger(__name__)

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
_BLOCK = 1 << 20
_BOUNDARY_HEAD = b"\x01\x12\x05\x00"  # Length 18, tag 5
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Framing of one chunk.

    Attributes
    ----------
    tag : int
        A :class:`ChunkTag` for known tags, else the raw uint16.
    offset : int
        Byte offset of the chunk (its varlen Length).
    length : int
        The Length field: tag + content bytes.
    content_offset : int
        Byte offset just after the tag (where a stream id starts, if any).
    stream_id : int | None
        The stream id for tags 2, 3, 4 and 6.
    """

    tag: int
    offset: int
    length: int
    content_offset: int
    stream_id: int | None

    @property
    def end(self) -> int:
        """Byte offset just after the chunk."""
        return self.content_offset + self.length - 2


class ByteSource:
    """Random access over bytes, a path or a seekable binary file object.

    A path to a compressed XDF (``.xdf.gz`` members, LabRecorder's zlib ``.xdfz``;
    recognised by content) is read through a decompressed temporary file; its
    `inflated` tells how the compressed file ended.
    """

    def __init__(self, source: Source) -> None:
        self._buf: bytes | None = None
        self._file: IO[bytes] | None = None
        self._owns = False
        self.inflated: Inflated | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self._buf = source if isinstance(source, bytes) else bytes(source)
            self.size = len(self._buf)
            return
        if isinstance(source, str | os.PathLike):
            if file_compression(source) is not None:
                self._file, self.inflated = open_inflated(source)
            else:
                self._file = open(Path(source), "rb")
            self._owns = True
        elif isinstance(source, io.TextIOBase):
            raise TypeError("The XDF file must be opened in binary mode.")
        else:
            self._file = source
        self.size = self._file.seek(0, os.SEEK_END)

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file if this object opened it."""
        if self._owns and self._file is not None:
            self._file.close()
        self._file = None

    def find(self, needle: bytes, start: int) -> int:
        """Return the offset of ``needle`` at or after ``start``, or -1."""
        if self._buf is not None:
            return self._buf.find(needle, start)
        pos = start
        while pos < self.size:
            block = self.read(pos, _BLOCK + len(needle) - 1)
            hit = block.find(needle)
            if hit >= 0:
                return pos + hit
            pos += _BLOCK
        return -1

    def read(self, pos: int, n: int) -> bytes:
        """Read up to ``n`` bytes at ``pos`` (fewer at the end of the data)."""
        n = max(0, min(n, self.size - pos))
        if self._buf is not None:
            return self._buf[pos : pos + n]
        assert self._file is not None
        self._file.seek(pos)
        return self._file.read(n)


@dataclass(slots=True)
class WalkStats:
    """Counters of one walk (loop iterations are bounded by the file size)."""

    steps: int = 0
    resyncs: int = 0
    problems: list[str] = field(default_factory=BoundedList)

    def problem(self, text: str) -> None:
        """Record a finding (bounded: see :class:`~lsl_session.limits.BoundedList`)."""
        if len(self.problems) < getattr(self.problems, "cap", len(self.problems) + 1):
            logger.info("%s", text)
        self.problems.append(text)


def _resync(src: ByteSource, pos: int) -> int | None:
    """Return where to resume after a bad chunk at ``pos`` (> pos), or None."""
    hit = src.find(BOUNDARY_UUID, pos + 1)
    if hit < 0:
        return None
    start = hit - len(_BOUNDARY_HEAD)
    if start > pos and src.read(start, 4) == _BOUNDARY_HEAD:
        return start  # resume at the Boundary chunk itself
    return hit + len(BOUNDARY_UUID)


def check_magic(src: ByteSource) -> None:
    """Raise :class:`XdfFormatError` unless the data starts with ``XDF:``."""
    if src.size < len(MAGIC):
        raise XdfFormatError(f"Not an XDF file: only {src.size} bytes.")
    magic = src.read(0, len(MAGIC))
    if magic != MAGIC:
        raise XdfFormatError(f"Not an XDF file: starts with {magic!r}, not b'XDF:'.")


def walk(src: ByteSource, stats: WalkStats) -> Iterator[Chunk]:
    """Yield the chunks of ``src``; resync at the next Boundary after bad framing."""
    check_magic(src)
    size, pos = src.size, len(MAGIC)
    while pos < size:
        stats.steps += 1
        head = src.read(pos, 15)  # varlen (≤ 9) + tag (2) + stream id (4)
        try:
            length, p = decode_varlen(head)
            if p + 2 > len(head):
                raise ChunkError("chunk tag cut off by the end of the file")
            tag = _U16.unpack_from(head, p)[0]
            if tag in ChunkTag._value2member_map_:
                tag = ChunkTag(tag)
            if length < MIN_LENGTH.get(tag, 2):
                raise ChunkError(f"Length {length} too small for chunk tag {tag}")
            end = pos + p + length
            if end > size:
                raise ChunkError(
                    f"chunk (tag {tag}, Length {length}) ends {end - size} bytes "
                    "past the end of the file"
                )
        except ChunkError as err:
            nxt = _resync(src, pos)
            stats.resyncs += 1
            if nxt is None:
                stats.problem(
                    f"torn or invalid final chunk at byte {pos}: {err}; the last "
                    f"{size - pos} bytes were ignored (no boundary chunk after it)"
                )
                return
            stats.problem(
                f"invalid chunk at byte {pos}: {err}; skipped {nxt - pos} bytes to "
                f"the next boundary chunk"
            )
            pos = nxt
            continue
        sid = _U32.unpack_from(head, p + 2)[0] if tag in STREAM_TAGS else None
        yield Chunk(tag, pos, length, pos + p + 2, sid)
        pos = end


def iter_chunks(
    source: Source, *, problems: list[str] | None = None
) -> Iterator[Chunk]:
    """Iterate over the chunk framing of an XDF file.

    Parameters
    ----------
    source : path | bytes | binary file object
        The XDF data. A file object must be seekable; offsets count from its start.
    problems : list of str | None
        If given, a human-readable line is appended for each resync or torn tail.

    Yields
    ------
    Chunk
        One record per well-framed chunk, in file order. Content is not validated.

    Raises
    ------
    XdfFormatError
        If the data is shorter than 4 bytes or does not start with ``XDF:``.
    """
    stats = WalkStats(problems=problems if problems is not None else BoundedList())
    with ByteSource(source) as src:
        yield from walk(src, stats)
