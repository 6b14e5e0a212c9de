"""``lsl-session archive``: copy finished sessions to shared storage.

A session goes to ``URL/<session_id>/`` file by file (every file of the folder but
the lock, hidden work files and ``.incoming/``). For each file the local sha256 is
computed; a file the far side already holds with that size and sha256 is skipped
(a re-run sends 0 bytes); the others are uploaded (resuming a cut upload) and then
checked on the far side (`backends`). The metadata gets, per URL, ``status``
(``partial`` while a run is under way or after a failed one, ``complete``), the
time, file and byte counts; the metadata is sent after every other file, and last
a manifest ``.lsl-archive.json`` (every file's size and sha256) that readers
(`cache`) check their copies against. A session still recording, or in use by a
live process, is refused.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.catalog import effective_status, owner_alive
from lsl_session.errors import LslSessionError, SessionStateError
from lsl_session.metadata import now_iso, read_metadata
from lsl_session.session import Session, sha256_file
from lsl_session.storage.backends import StorageError, open_backend, public_url

logger = logging.getLogger(__name__)

MANIFEST = ".lsl-archive.json"
#: Statuses a session may be archived in.
ARCHIVABLE = {"active", "completed", "processed", "error", "interrupted"}


@dataclass
class ArchiveResult:
    """What one session's archive run did."""

    session_id: str
    url: str
    files: int = 0
    total_bytes: int = 0
    sent_bytes: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def session_files(folder: Path) -> list[str]:
    """Relative paths of every file to archive, sorted, the metadata last."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            out.append(path.relative_to(folder).as_posix())
    out.sort(key=lambda rel: (rel == layout.METADATA_FILE, rel))
    return out


def check_archivable(folder: Path) -> None:
    """Raise `SessionStateError` for a session that is recording or in use."""
    meta = read_metadata(folder)
    status = effective_status(meta)
    if status not in ARCHIVABLE or (status == "active" and owner_alive(meta)):
        owner = meta.get("owner") or {}
        raise SessionStateError(
            f"{folder.name}: {status}"
            + (f" (in use by pid {owner.get('pid')})" if owner_alive(meta) else "")
            + "; archive it when the recording is finished"
        )


def archive_session(
    folder: Path | str,
    url: str,
    *,
    verify: str | None = None,
    endpoint_url: str | None = None,
    part_mb: float | None = None,
    concurrency: int = 8,
    say: Callable[[str], None] = lambda line: None,
) -> ArchiveResult:
    """Archive one session folder to ``url`` (see the module doc).

    Raises
    ------
    SessionStateError
        If the session is still recording or in use.
    StorageError
        When the far side fails; the metadata says ``partial`` and a re-run resumes.
    """
    folder = Path(folder).resolve()
    check_archivable(folder)
    session = Session(folder)
    base = url.rstrip("/") + "/" + session.session_id
    backend = open_backend(base, verify=verify, endpoint_url=endpoint_url,
                           part_mb=part_mb, concurrency=concurrency)  # fmt: skip
    result = ArchiveResult(session.session_id, public_url(url))
    started = time.monotonic()
    try:
        _run(session, backend, result, say)
    except StorageError as exc:
        _record(session, result.url, "partial", result, backend.verify)
        raise StorageError(
            f"{session.session_id}: archive to {result.url} interrupted after"
            f" {result.sent_bytes / 1e6:.1f} MB: {exc}; run it again to resume"
        ) from None
    except Exception as exc:
        _record(session, result.url, "partial", result, backend.verify)
        if type(exc).__module__.startswith(
            ("botocore", "boto3", "urllib3", "aiohttp", "paramiko", "fsspec")
        ):
            raise StorageError(
                f"{session.session_id}: archive to {result.url} interrupted after"
                f" {result.sent_bytes / 1e6:.1f} MB: {str(exc)[:200]}; run it again"
                " to resume"
            ) from None
        raise
    finally:
        backend.close()
        session.close()
        result.seconds = time.monotonic() - started
    return result


def _run(session: Session, backend: Any, result: ArchiveResult, say) -> None:
    folder = session.root
    rels = session_files(folder)
    meta_rel = layout.METADATA_FILE
    data_rels = [r for r in rels if r != meta_rel]
    manifest: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    progress_total = [0]

    def progress(n: int) -> None:
        with lock:
            progress_total[0] += n

    todo = []
    for rel in data_rels:
        size = (folder / rel).stat().st_size
        manifest[rel] = {"size": size, "sha256": sha256_file(folder / rel)}
        if _held(backend, rel, manifest[rel]):
            result.skipped += 1
        else:
            todo.append(rel)
    before = json.loads((folder / meta_rel).read_text()).get("archives", {})
    previous = before.get(result.url, {})
    if todo or previous.get("status") != "complete":
        _record(session, result.url, "partial", result, backend.verify)
    for rel in todo:
        entry = manifest[rel]
        say(f"  {rel} ({entry['size'] / 1e6:.1f} MB)")
        result.sent_bytes += backend.upload(
            str(folder / rel), rel, entry["size"], entry["sha256"], progress
        )
        backend.check(rel, entry["size"], entry["sha256"])
    result.files = len(rels)
    result.total_bytes = sum(e["size"] for e in manifest.values())
    if todo or previous.get("status") != "complete":
        _record(session, result.url, "complete", result, backend.verify)
    meta_entry = {"size": (folder / meta_rel).stat().st_size,
                  "sha256": sha256_file(folder / meta_rel)}  # fmt: skip
    manifest[meta_rel] = meta_entry
    if not _held(backend, meta_rel, meta_entry):
        result.sent_bytes += backend.upload(
            str(folder / meta_rel), meta_rel, meta_entry["size"], meta_entry["sha256"],
            progress,
        )  # fmt: skip
        backend.check(meta_rel, meta_entry["size"], meta_entry["sha256"])
    else:
        result.skipped += 1
    body = json.dumps(
        {"session_id": session.session_id, "files": manifest}, indent=1, sort_keys=True
    ).encode()
    if backend.get_bytes(MANIFEST) != body:
        backend.put_bytes(MANIFEST, body)
        result.sent_bytes += len(body)


def _held(backend: Any, rel: str, entry: dict[str, Any]) -> bool:
    """Whether the far side already holds this exact file."""
    remote = backend.stat(rel)
    if remote is None or remote.size != entry["size"]:
        return False
    if remote.sha256 is not None and backend.verify != "readback":
        return remote.sha256 == entry["sha256"]
    try:
        backend.check(rel, entry["size"], entry["sha256"])
    except StorageError:
        return False
    return True


def _record(
    session: Session, url: str, status: str, result: ArchiveResult, verify: str
) -> None:
    """Write the archive's status under ``archives[url]`` in the metadata."""

    def change(meta: dict[str, Any]) -> None:
        meta.setdefault("archives", {})[url] = {
            "status": status,
            "time": now_iso(),
            "files": result.files,
            "bytes": result.total_bytes,
            "verify": verify,
        }

    try:
        session.update(change)
    except LslSessionError:
        logger.exception("recording the archive status failed")
