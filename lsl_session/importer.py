"""``lsl-session import``: a session folder made from any XDF file (LabRecorder's or ours).

The original file (and its ``_partNNN`` siblings) is never moved or modified; its
sha256 is recorded. A file verified complete (FileHeader, every StreamHeader and
footer read, nothing torn) is hard-linked into the new session; a torn one, or one
on another file system, is copied, so a later ``recover`` of the session repairs
the session's own copy. Every figure is computed and checked (finite stamps, a
datetime in range) before the session folder exists; a failure after that removes
the half-made folder, so an import is whole or absent. The metadata comes from the headers:
the FileHeader ``datetime`` gives the session id and ``start_time`` (so MNE's
``meas_date`` is the recording's), the StreamHeaders give the stream list, and
the footers (or the samples) give the counts and the duration. Importing the same
file twice into the same root reuses the first session.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.catalog import session_folders
from lsl_session.errors import LslSessionError, MetadataError
from lsl_session.fsutil import fsync_dir
from lsl_session.limits import clip
from lsl_session.metadata import now_iso, read_metadata
from lsl_session.session import Session, create_session_folder
from lsl_session.xdf import load_raw
from lsl_session.xdf._format import XdfFormatError
from lsl_session.xdf.compressed import (
    file_compression,
    split_xdf_name,
    starts_as_xdf,
)
from lsl_session.xdf.reader import synced_duration

logger = logging.getLogger(__name__)

_PART = re.compile(r"^(?P<stem>.+)_part(?P<n>\d{3,})$")
_MAGIC = b"XDF:"
_BLOCK = 1 << 20
#: Most parts accepted for one recording (bounds the sibling scan).
MAX_PARTS = 10_000
#: Largest magnitude of a stamp (s) accepted from a footer or sample (~317 years).
MAX_STAMP = 1e10


class XdfImportError(LslSessionError):
    """The file cannot be imported (missing, not XDF, unreadable headers)."""


def is_xdf_file(path: Path | str) -> bool:
    """True for an existing file whose first four bytes are ``XDF:`` (also once
    decompressed: ``.xdf.gz``, LabRecorder's ``.xdfz``)."""
    path = Path(path)
    if not path.is_file():
        return False
    return starts_as_xdf(path)


def recording_parts(path: Path | str) -> list[Path]:
    """The files of one recording: ``X.xdf`` then ``X_part002.xdf`` … in order.

    ``path`` may name the first file or any part; a part whose first file is
    missing is returned with its own later siblings.
    """
    path = Path(path)
    name_stem, suffix = split_xdf_name(path.name) or (path.stem, path.suffix)
    match = _PART.match(name_stem)
    stem = match.group("stem") if match else name_stem
    first = path.with_name(f"{stem}{suffix}")
    pattern = re.compile(rf"^{re.escape(stem)}_part(\d{{3,}}){re.escape(suffix)}$")
    parts = sorted(
        (int(m.group(1)), p)
        for p in path.parent.glob(f"{glob_escape(stem)}_part*{suffix}")
        if (m := pattern.match(p.name)) and int(m.group(1)) >= 2 and p.is_file()
    )[:MAX_PARTS]
    files = [first] if first.is_file() else []
    return files + [p for _, p in parts]


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in ``text``."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def header_datetime(header: dict[str, Any]) -> dt.datetime | None:
    """The FileHeader ``datetime`` (``%Y-%m-%dT%H:%M:%S%z`` or ISO) as an aware datetime."""
    raw = (header or {}).get("datetime")
    if not isinstance(raw, str):
        return None
    raw = raw.strip()
    if re.search(r"[+-]\d{4}$", raw):
        raw = raw[:-2] + ":" + raw[-2:]
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return when if when.tzinfo else when.astimezone()


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file (1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _place(source: Path, target: Path, *, copy: bool) -> str:
    """Hard-link (else copy) ``source`` to ``target`` atomically; return the method.

    ``copy`` forces a copy (a torn file, or the user's choice); a link across
    file systems falls back to a copy.
    """
    tmp = target.with_name(f".{target.name}.import-{uuid.uuid4().hex[:8]}")
    method = "copy"
    try:
        if not copy:
            try:
                os.link(source, tmp)
                method = "hardlink"
            except OSError as exc:
                if exc.errno not in (
                    errno.EXDEV,
                    errno.EPERM,
                    errno.EMLINK,
                    errno.ENOTSUP,
                ):
                    raise
        if method == "copy":
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                shutil.copyfileobj(src, dst, _BLOCK)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(target.parent)
    return method


def _stream_entry(raw: Any) -> dict[str, Any]:
    info = raw.info
    footer = raw.footer or {}
    first, last = footer.get("first_timestamp"), footer.get("last_timestamp")
    if raw.first_stamp is not None:  # decoded (no footer): the samples' own stamps
        first, last = raw.first_stamp, raw.last_stamp
    if not raw.sample_count:
        first = last = None
    return {
        **{k: info.get(k) for k in ("name", "type", "source_id", "hostname")},
        "stream_id": raw.stream_id,
        "channel_count": info.get("channel_count"),
        "channel_format": info.get("channel_format"),
        "nominal_srate": info.get("nominal_srate"),
        "sample_count": raw.sample_count,
        "first_timestamp": first,
        "last_timestamp": last,
        "duration_s": synced_duration(first, last, raw.clock_values),
        "clock_offsets": len(raw.clock_times),
    }


def _check_stamps(path: Path, entry: dict[str, Any]) -> None:
    for key in ("first_timestamp", "last_timestamp", "duration_s"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, int | float) or not abs(value) <= MAX_STAMP:
            raise XdfImportError(
                f"{path}: stream {clip(entry.get('name'), 60)!r}: {key}"
                f" {clip(repr(value), 40)} is out of range (|x| <= {MAX_STAMP:g} s)"
            )


def _read_headers(
    files: list[Path],
) -> tuple[list[dict[str, Any]], dict[str, Any], list[bool]]:
    """Streams, FileHeader, and per file whether it was read complete."""
    streams: dict[tuple[Any, ...], dict[str, Any]] = {}
    header: dict[str, Any] = {}
    complete: list[bool] = []
    for k, path in enumerate(files):
        try:
            xdf = load_raw(path, headers_only=True)
            complete.append(
                not xdf.problems
                and bool(xdf.header)
                and xdf.last_good_offset == path.stat().st_size
            )
            if any("footer" in p for p in xdf.problems):
                # no footers: count the samples (decoded, not kept: bounded memory)
                xdf = load_raw(path, keep_samples=False)
        except (XdfFormatError, OSError) as exc:
            raise XdfImportError(f"{path}: not a readable XDF file: {exc}") from None
        if not xdf.streams and xdf.problems:
            raise XdfImportError(f"{path}: not a readable XDF file: {xdf.problems[0]}")
        if k == 0:
            header = dict(xdf.header)
        for raw in xdf.streams.values():
            entry = _stream_entry(raw)
            _check_stamps(path, entry)
            key = (entry["name"], entry["source_id"] or f"#{raw.stream_id}")
            old = streams.get(key)
            if old is None:
                streams[key] = entry
                continue
            old["sample_count"] += entry["sample_count"]
            old["clock_offsets"] += entry["clock_offsets"]
            if entry["last_timestamp"] is not None:
                old["last_timestamp"] = entry["last_timestamp"]
            if old["duration_s"] is not None and entry["duration_s"] is not None:
                old["duration_s"] += entry["duration_s"]
                _check_stamps(path, old)
    return list(streams.values()), header, complete


def _times(
    path: Path, when: dt.datetime, duration: float, source: str
) -> tuple[str, str]:
    """ISO start and end of the recording; a clear error when out of range."""
    try:
        when.astimezone()
        start = when.isoformat(timespec="microseconds")
        end = (when + dt.timedelta(seconds=duration)).isoformat(timespec="microseconds")
        layout.session_id_for(None, when)
    except (OverflowError, ValueError) as exc:
        raise XdfImportError(
            f"{path}: recording start ({source}) {when.isoformat()} plus"
            f" {duration:g} s is out of range ({exc})"
        ) from None
    return start, end


def find_imported(root: Path | str, sha256: str) -> Path | None:
    """The session under ``root`` already imported from a file with this sha256."""
    for folder in session_folders(root):
        try:
            meta = read_metadata(folder)
        except MetadataError:
            continue
        imported = (meta.get("recording") or {}).get("imported") or []
        if imported and isinstance(imported[0], dict):
            if imported[0].get("sha256") == sha256:
                return folder
    return None


def import_xdf(
    path: Path | str,
    root: Path | str,
    *,
    name: str | None = None,
    copy: bool = False,
    reuse: bool = True,
) -> Path:
    """Create a session folder under ``root`` from an XDF recording.

    Parameters
    ----------
    path : Path | str
        The ``.xdf`` file (or any part of a split recording; every part is
        imported).
    root : Path | str
        The recordings root.
    name : str | None
        Session name prefix; default the file name (or the name of the session
        id the file carries).
    copy : bool
        Copy instead of hard-linking.
    reuse : bool
        Return the existing session when the same file (sha256 of its first part)
        was imported under ``root`` before.

    Returns
    -------
    Path
        The session folder.

    Raises
    ------
    XdfImportError
        If the file is missing, not XDF, or its headers cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise XdfImportError(f"{path}: no such file")
    if not is_xdf_file(path):
        raise XdfImportError(f"{path}: not an XDF file (no 'XDF:' magic)")
    files = recording_parts(path)
    if path.resolve() not in [f.resolve() for f in files]:
        files = [path]
    files = [f for f in files if is_xdf_file(f)]
    hashes = [sha256_of(f) for f in files]
    if reuse and (found := find_imported(root, hashes[0])) is not None:
        logger.info("%s was imported before: %s", path, found)
        return found
    streams, header, complete = _read_headers(files)
    durations = [s["duration_s"] for s in streams if s["duration_s"] is not None]
    duration = max(durations, default=0.0)
    when = header_datetime(header)
    time_source = "FileHeader datetime"
    if when is None:  # the last write ended the recording
        mtime = dt.datetime.fromtimestamp(files[-1].stat().st_mtime).astimezone()
        when = (mtime - dt.timedelta(seconds=duration)).replace(microsecond=0)
        time_source = "file modification time minus duration"
    start, end = _times(path, when, duration, time_source)
    if name is None:
        stem = _PART.sub(r"\g<stem>", files[0].stem)
        parsed = layout.parse_session_id(stem)
        name = (parsed[0] if parsed else stem) or None
        if name is not None:
            try:
                layout.sanitize_name(name)
            except LslSessionError:
                name = None
    folder = create_session_folder(root, name, when)
    try:
        _fill(folder, files, hashes, complete, copy, header, streams, duration,
              (start, end, time_source))  # fmt: skip
    except BaseException:
        # nothing half-imported stays behind (the folder is ours, just made)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _fill(
    folder: Path,
    files: list[Path],
    hashes: list[str],
    complete: list[bool],
    copy: bool,
    header: dict[str, Any],
    streams: list[dict[str, Any]],
    duration: float,
    times: tuple[str, str, str],
) -> None:
    """Place the files and commit the metadata (its record last)."""
    start, end, time_source = times
    sid = folder.name
    imported = []
    for k, (source, digest) in enumerate(zip(files, hashes, strict=True)):
        kind = file_compression(source)
        ext = {"gzip": ".xdf.gz", "zlib": ".xdfz"}.get(kind or "", ".xdf")
        target = folder / (f"{sid}{ext}" if k == 0 else f"{sid}_part{k + 1:03d}{ext}")
        method = _place(source, target, copy=copy or not complete[k])
        if sha256_of(target) != digest:  # the source changed under us
            raise XdfImportError(f"{source}: changed while it was imported")
        imported.append({
            "file": target.name, "original": str(source.resolve()),
            "sha256": digest, "size": source.stat().st_size, "method": method,
        })  # fmt: skip

    def change(meta: dict[str, Any]) -> None:
        meta.update(start_time=start, end_time=end, duration_s=duration)
        meta["status"] = "completed"
        meta["recording"] = {
            "xdf_files": [e["file"] for e in imported], "streams": streams,
            "runs": [], "start_lsl_time": None, "stop_lsl_time": None,
            "start_time": start, "stop_time": end, "start_time_source": time_source,
            "file_header": header,
            "imported": imported, "imported_time": now_iso(),
        }  # fmt: skip

    session = Session(folder)
    try:
        session.log_event(
            "session_imported",
            {"files": [{k: e[k] for k in ("file", "original", "sha256", "method")}
                       for e in imported]},
        )  # fmt: skip
        session.update(change)  # last: a complete import is one with this record
    finally:
        session.close()


def owning_session(path: Path | str) -> Path | None:
    """The session folder holding the XDF file ``path`` as its recording, if any."""
    path = Path(path).resolve()
    folder = path.parent
    if not (folder / layout.METADATA_FILE).is_file():
        return None
    name_stem = (split_xdf_name(path.name) or (path.stem, ""))[0]  # x.xdf.gz → x
    stem = _PART.sub(r"\g<stem>", name_stem)
    return folder if stem == folder.name else None


def session_for(path: Path | str, root: Path | str) -> Path:
    """A session folder for ``path``: itself, the session an XDF file belongs to,
    or the import of an XDF file under ``root``."""
    path = Path(path)
    if path.is_file():
        return owning_session(path) or import_xdf(path, root)
    return path
