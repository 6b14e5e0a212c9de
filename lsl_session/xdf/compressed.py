"""Compressed XDF: our gzip-member files (``.xdf.gz``) and LabRecorder's zlib ``.xdfz``.

The recorder writes ``.xdf.gz`` as a series of complete gzip members, one closed
at every fsync: a file cut by ``kill -9`` or a full disk holds complete members
and at most one torn member at its end, and stock readers (``gzip``, pyxdf's
``load_xdf``) read the members as one stream. LabRecorder built with zlib writes
``.xdfz`` as one zlib stream, which ``gzip.open`` (and so pyxdf) refuses; we read
both, by their first bytes whatever the suffix.

Reading decompresses into an anonymous temporary file (never next to the
original, never in memory as a whole), so every command keeps its random access.
The decompressed size is bounded by the free space of the temporary folder less
`TEMP_MARGIN` (a decompression bomb is refused with a clear error).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ._format import XdfFormatError

GZIP_MAGIC = b"\x1f\x8b"
#: Suffixes written and recognised (the content decides, not the suffix).
SUFFIXES = (".xdf.gz", ".xdfz")
#: Free space kept in the temporary folder when decompressing.
TEMP_MARGIN = 512 * 1024 * 1024
_BLOCK = 1 << 20


def compression(head: bytes) -> str | None:
    """``"gzip"``, ``"zlib"`` or None, from a file's first two bytes."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"  # CMF/FLG of a deflate zlib stream (0x78 0x9c, 0x78 0x01, …)
    return None


def file_compression(path: str | os.PathLike) -> str | None:
    """The compression of the file at ``path`` (None for a plain XDF)."""
    try:
        with open(path, "rb") as fh:
            return compression(fh.read(2))
    except OSError:
        return None


def is_compressed_name(name: str) -> bool:
    """Whether a file name has a compressed-XDF suffix."""
    return name.lower().endswith(SUFFIXES)


#: Every XDF file suffix, longest first.
XDF_SUFFIXES = (".xdf.gz", ".xdfz", ".xdf")


def split_xdf_name(name: str) -> tuple[str, str] | None:
    """``("x", ".xdf.gz")`` for ``x.xdf.gz``; None for a name that is no XDF file."""
    lower = name.lower()
    for suffix in XDF_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return None


def starts_as_xdf(path: str | os.PathLike) -> bool:
    """Whether a file begins with ``XDF:`` (after decompression, if compressed)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            kind = compression(head)
            if kind is None:
                return head + fh.read(2) == b"XDF:"
            fh.seek(0)
            d = zlib.decompressobj(31 if kind == "gzip" else 15)
            return d.decompress(fh.read(4096), 4) == b"XDF:"
    except (OSError, zlib.error):
        return False


@dataclass(slots=True)
class Inflated:
    """What decompressing a file gave."""

    kind: str
    members: int = 0
    #: byte offset (in the compressed file) just after the last complete member
    good_end: int = 0
    #: decompressed bytes written
    size: int = 0
    #: decompressed bytes of the complete members
    good_size: int = 0
    #: the file ends inside a member (a torn tail: kill -9, full disk)
    torn: bool = False


def inflate(src: IO[bytes], dst: IO[bytes], *, limit: int | None = None) -> Inflated:
    """Decompress every member of ``src`` into ``dst``, tolerating a torn end.

    Raises
    ------
    XdfFormatError
        If the data is not compressed, is corrupt before its end, or would
        decompress to more than ``limit`` bytes.
    """
    kind = compression(src.read(2))
    if kind is None:
        raise XdfFormatError("not a gzip or zlib compressed file")
    src.seek(0)
    wbits = 31 if kind == "gzip" else 15
    out = Inflated(kind)
    d = zlib.decompressobj(wbits)
    offset = 0  # compressed offset of the start of ``block``
    block = src.read(_BLOCK)

    def emit(data: bytes) -> None:
        out.size += len(data)
        if limit is not None and out.size > limit:
            raise XdfFormatError(
                f"decompresses to more than {limit} bytes (the free space kept"
                " for it); not read"
            )
        dst.write(data)

    while block:
        try:
            emit(d.decompress(block))
        except zlib.error as exc:
            if out.members:  # garbage after complete members: a torn tail
                out.torn = True
                return out
            raise XdfFormatError(f"corrupt compressed data ({exc})") from None
        if not d.eof:
            offset += len(block)
            block = src.read(_BLOCK)
            continue
        consumed = len(block) - len(d.unused_data)
        out.members += 1
        out.good_end = offset = offset + consumed
        out.good_size = out.size
        if kind == "zlib":
            return out  # one stream; anything after it is not ours
        block = d.unused_data or src.read(_BLOCK)
        d = zlib.decompressobj(wbits)
    if offset > out.good_end:  # a member started and did not end
        out.torn = True
        emit(d.flush())  # its readable start: a prefix of valid XDF
    if out.members == 0 and out.size == 0:
        raise XdfFormatError("compressed file holds no complete data")
    return out


def open_inflated(path: str | os.PathLike) -> tuple[IO[bytes], Inflated]:
    """A seekable temporary file with the decompressed content of ``path``."""
    tmp_dir = tempfile.gettempdir()
    limit = max(0, shutil.disk_usage(tmp_dir).free - TEMP_MARGIN)
    dst = tempfile.TemporaryFile(prefix="lsl-session-xdf-")
    try:
        with open(Path(path), "rb") as src:
            result = inflate(src, dst, limit=limit)
        dst.seek(0)
    except BaseException:
        dst.close()
        raise
    return dst, result


def gzip_member(data: bytes, level: int) -> bytes:
    """One complete gzip member holding ``data`` (no name, mtime 0: reproducible)."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def open_xdf(path: str | os.PathLike) -> IO[bytes]:
    """Open an XDF file for reading: the file itself, or its decompressed copy."""
    if file_compression(path) is not None:
        return open_inflated(path)[0]
    return open(Path(path), "rb")
