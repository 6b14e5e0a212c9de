"""Repair one XDF file: cut a torn final chunk (kept aside) and append missing footers."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsl_session.fsutil import fsync_dir, open_nofollow
from lsl_session.xdf._format import MAGIC, XdfFormatError
from lsl_session.xdf.compressed import file_compression, gzip_member, open_inflated
from lsl_session.xdf.reader import RawStream, XdfFile, load_raw
from lsl_session.xdf.writer import encode_file_header, encode_stream_footer

logger = logging.getLogger(__name__)

#: zlib level of a member appended to a compressed file (as the recorder's).
COMPRESS_LEVEL = 1

#: Suffix of the file that keeps the bytes cut off the end of an XDF file.
TORN_SUFFIX = ".torn-tail"
_COPY_BLOCK = 1 << 20


@dataclass(slots=True)
class XdfRepair:
    """What :func:`repair_xdf` found and did (or would do, in a dry run).

    Attributes
    ----------
    path : Path
        The XDF file.
    size_before, size_after : int
        File size before and after the repair (equal when nothing was cut or
        appended, or in a dry run).
    torn_bytes : int
        Bytes after the last complete chunk that were cut off.
    torn_tail : Path | None
        Where the cut-off bytes were saved (``<file>.torn-tail[-N]``).
    footers_added : list of int
        Stream ids that got a computed StreamFooter.
    file_header_added : bool
        The file had no complete FileHeader; a fresh one was written.
    problems : list of str
        Findings that were not repaired (not an XDF file, undecodable streams).
    streams : list of dict
        Per stream: identity, channel format, sample count, first/last stamp,
        clock offset count (what the file holds after the repair).
    """

    path: Path
    size_before: int = 0
    size_after: int = 0
    torn_bytes: int = 0
    torn_tail: Path | None = None
    footers_added: list[int] = field(default_factory=list)
    file_header_added: bool = False
    #: the file had other hard links: a repaired copy replaced it, they are intact
    unlinked: bool = False
    problems: list[str] = field(default_factory=list)
    streams: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True if the file needed (or got) a repair."""
        return bool(self.torn_bytes or self.footers_added or self.file_header_added)

    def actions(self) -> list[str]:
        """Human-readable lines describing the repair."""
        out = []
        name = self.path.name
        if self.torn_bytes:
            kept = f", kept in {self.torn_tail.name}" if self.torn_tail else ""
            out.append(
                f"{name}: cut a torn final chunk ({self.torn_bytes} bytes{kept})"
            )
        if self.file_header_added:
            out.append(f"{name}: wrote a missing FileHeader")
        if self.footers_added:
            ids = ", ".join(str(i) for i in self.footers_added)
            out.append(f"{name}: appended StreamFooters for stream(s) {ids}")
        if self.unlinked:
            out.append(
                f"{name}: had other hard links (e.g. the imported original);"
                " repaired as a new copy, the other links left unchanged"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {
            "path": self.path.name,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "torn_bytes": self.torn_bytes,
            "torn_tail": self.torn_tail.name if self.torn_tail else None,
            "footers_added": list(self.footers_added),
            "file_header_added": self.file_header_added,
            "problems": list(self.problems),
        }


def stream_summary(stream: RawStream) -> dict[str, Any]:
    """The metadata entry (SPEC §3 ``recording.streams``) of one stream."""
    info = stream.info
    first, last = _first_last(stream)
    return {
        "stream_id": stream.stream_id,
        **{k: info.get(k) for k in ("name", "type", "source_id", "hostname")},
        "channel_count": info.get("channel_count"),
        "channel_format": info.get("channel_format"),
        "nominal_srate": info.get("nominal_srate"),
        "sample_count": int(stream.sample_count),
        "first_timestamp": first,
        "last_timestamp": last,
        "clock_offsets": len(stream.clock_times),
    }


def _first_last(stream: RawStream) -> tuple[float | None, float | None]:
    """First and last raw stamp, whether or not the samples were kept."""
    if stream.first_stamp is not None:
        return stream.first_stamp, stream.last_stamp
    stamps = stream.time_stamps
    if not len(stamps):
        return None, None
    return float(stamps[0]), float(stamps[-1])


def _free_name(path: Path) -> Path:
    """``path`` if it does not exist yet, else ``path-2``, ``path-3`` …"""
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


def _save_tail(path: Path, start: int) -> Path:
    """Copy the bytes of ``path`` from ``start`` on into a new torn-tail file."""
    target = _free_name(path.with_name(path.name + TORN_SUFFIX))
    fd = open_nofollow(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with open(path, "rb") as src:
            src.seek(start)
            while block := src.read(_COPY_BLOCK):  # bounded memory on a huge tail
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(target.parent)
    return target


def _cut_and_append(path: Path, keep: int, tail: bytes) -> bool:
    """Truncate ``path`` to ``keep`` bytes, append ``tail`` and fsync.

    A file with more than one link (a hard link to a file outside the session,
    e.g. an imported original) is never written in place: the repaired bytes go
    to a new file that replaces ``path``'s name, and the other links keep the
    original content. Returns True when such a copy was written.
    """
    fd = open_nofollow(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_nlink > 1:
            _repaired_copy(fd, path, keep, tail)
            return True
        if os.fstat(fd).st_size != keep:
            os.ftruncate(fd, keep)
        if tail:
            os.pwrite(fd, tail, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
    return False


def _repaired_copy(src: int, path: Path, keep: int, tail: bytes) -> None:
    """Write ``src``'s first ``keep`` bytes plus ``tail`` to a new file at ``path``."""
    tmp = path.with_name(f".{path.name}.repair-{uuid.uuid4().hex[:8]}")
    mode = os.fstat(src).st_mode & 0o777
    out = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        pos = 0
        while pos < keep:
            block = os.pread(src, min(_COPY_BLOCK, keep - pos), pos)
            if not block:
                break
            view = memoryview(block)
            while view:
                view = view[os.write(out, view) :]
            pos += len(block)
        view = memoryview(tail)
        while view:
            view = view[os.write(out, view) :]
        os.fsync(out)
        os.close(out)
        out = -1
        os.replace(tmp, path)
    finally:
        if out >= 0:
            os.close(out)
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def _footer(stream: RawStream) -> bytes:
    first, last = _first_last(stream)
    offsets = list(
        zip(stream.clock_times.tolist(), stream.clock_values.tolist(), strict=True)
    )
    return encode_stream_footer(
        stream.stream_id, first, last, int(stream.sample_count), offsets
    )


def _repair_short(path: Path, report: XdfRepair, dry_run: bool) -> XdfRepair:
    """A file that ends inside the magic code (crash right after creating it)."""
    data = path.read_bytes()
    if not MAGIC.startswith(data):
        report.problems.append(f"{path.name}: not an XDF file (bad magic); left alone")
        return report
    report.torn_bytes = len(data)
    report.file_header_added = True
    if dry_run:
        return report
    if data:
        report.torn_tail = _save_tail(path, 0)
    fresh = encode_file_header({"writer": "lsl_session recover"})
    report.unlinked = _cut_and_append(path, 0, fresh)
    report.size_after = len(fresh)
    return report


def repair_xdf(path: Path | str, *, dry_run: bool = False) -> XdfRepair:
    """Make an XDF file whole: cut a torn final chunk, append missing footers.

    Parameters
    ----------
    path : Path
        The XDF file. It must not be written by a running recorder. A symbolic
        link (or anything but a regular file) is reported and left alone, so
        recovery never modifies a file outside the session.
    dry_run : bool
        Only report what would be done.

    Returns
    -------
    XdfRepair
        Findings and actions. Idempotent: a second call finds nothing to do.

    Notes
    -----
    No byte is lost: the bytes after the last complete chunk are copied into
    ``<file>.torn-tail`` (``-2``, ``-3`` … if that exists) and fsynced before the
    file is truncated. A stream without a StreamFooter gets one computed from
    the file's chunks (first/last raw stamp, sample count, clock offsets), so
    pyxdf and other readers see footers on every stream. Samples are decoded
    chunk by chunk and not kept: memory is bounded by the largest chunk. Chunks are appended
    after the last complete chunk, so readers that stop at the torn tail and
    readers that resync both see the same data.
    """
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        report = XdfRepair(path)
        kind = "a symbolic link" if path.is_symlink() else "not a regular file"
        report.problems.append(f"{path.name}: {kind}; left alone")
        return report
    size = path.stat().st_size
    report = XdfRepair(path, size_before=size, size_after=size)
    kind = file_compression(path)
    if kind is not None:
        return _repair_compressed(path, kind, report, dry_run)
    if size < len(MAGIC):
        return _repair_short(path, report, dry_run)
    try:
        xdf: XdfFile = load_raw(path, keep_samples=False)
    except XdfFormatError as exc:
        report.problems.append(f"{path.name}: {exc}; left alone")
        return report
    keep = xdf.last_good_offset
    report.torn_bytes = size - keep
    extra = _missing_chunks(path, xdf, keep, report)
    if not report.changed or dry_run:
        return report
    if report.torn_bytes:
        report.torn_tail = _save_tail(path, keep)
    report.unlinked = _cut_and_append(path, keep, extra)
    report.size_after = keep + len(extra)
    logger.info("repaired %s: %s", path, "; ".join(report.actions()))
    return report


def _missing_chunks(path: Path, xdf: XdfFile, keep: int, report: XdfRepair) -> bytes:
    """The FileHeader (if missing) and the StreamFooters the file lacks."""
    extra = b""
    if not xdf.header and keep <= len(MAGIC):
        extra += encode_file_header({"writer": "lsl_session recover"})[len(MAGIC) :]
        report.file_header_added = True
    for sid, stream in xdf.streams.items():
        report.streams.append(stream_summary(stream))
        if stream.footer is not None:
            continue
        if stream.channel_format not in (
            "int8", "int16", "int32", "int64", "float32", "double64", "string"
        ):  # fmt: skip
            report.problems.append(
                f"{path.name}: stream {sid} has channel format "
                f"{stream.channel_format!r}; no footer computed"
            )
            continue
        extra += _footer(stream)
        report.footers_added.append(sid)
    for problem in xdf.problems:
        if problem.endswith("has no footer") or problem.startswith("torn or"):
            continue  # repaired here
        report.problems.append(f"{path.name}: {problem}")
    return extra


def _repair_compressed(
    path: Path, kind: str, report: XdfRepair, dry_run: bool
) -> XdfRepair:
    """``.xdf.gz``: keep the complete gzip members, re-compress what the torn one
    still held in whole chunks, and append the missing footers as a new member.

    LabRecorder's zlib ``.xdfz`` is one stream that cannot be appended to: it is
    reported, never modified.
    """
    try:
        tmp, inflated = open_inflated(path)
    except XdfFormatError as exc:
        report.problems.append(f"{path.name}: {exc}; left alone")
        return report
    with tmp:
        try:
            xdf = load_raw(tmp, keep_samples=False)
        except XdfFormatError as exc:
            report.problems.append(f"{path.name}: {exc}; left alone")
            return report
        keep = xdf.last_good_offset
        salvage = b""
        if keep > inflated.good_size:  # whole chunks inside the torn member
            tmp.seek(inflated.good_size)
            salvage = tmp.read(keep - inflated.good_size)
        extra = _missing_chunks(path, xdf, min(keep, inflated.size), report)
    if kind != "gzip":
        if inflated.torn or report.changed:
            report.problems.append(
                f"{path.name}: a zlib .xdfz (LabRecorder) cannot be appended to;"
                " read as it is, left alone"
            )
        report.footers_added.clear()
        report.file_header_added = False
        return report
    report.torn_bytes = report.size_before - inflated.good_end
    if not report.changed or dry_run:
        return report
    if report.torn_bytes:
        report.torn_tail = _save_tail(path, inflated.good_end)
    member = gzip_member(salvage + extra, COMPRESS_LEVEL) if salvage + extra else b""
    report.unlinked = _cut_and_append(path, inflated.good_end, member)
    report.size_after = inflated.good_end + len(member)
    logger.info("repaired %s: %s", path, "; ".join(report.actions()))
    return report
