"""Read archived sessions through a local cache (``process`` / ``export`` from a URL).

`fetch_session` reads the archive's manifest (``.lsl-archive.json``), downloads
every file the cache does not hold yet with the manifest's size and sha256, checks
each download's sha256, and returns the cached session folder
(``$LSL_SESSION_CACHE`` or ``~/.cache/lsl-session``, one folder per URL). Outputs
of ``process``/``export`` are written into the cached copy; archive it again to
share them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from lsl_session.fsutil import ensure_inside, fsync_dir
from lsl_session.session import sha256_file
from lsl_session.storage.archive import MANIFEST
from lsl_session.storage.backends import StorageError, open_backend

CACHE_ENV = "LSL_SESSION_CACHE"
_REL = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\Z")


def is_url(text: str) -> bool:
    """Whether a command-line argument names remote storage (``scheme://``)."""
    return "://" in text and not text.startswith("file://")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lsl-session")


def fetch_session(url: str, *, endpoint_url: str | None = None) -> Path:
    """A verified local copy of the archived session at ``url`` (see the module doc).

    Raises
    ------
    StorageError
        If ``url`` holds no archived session, or a download does not match.
    """
    url = url.rstrip("/")
    session_id = url.rsplit("/", 1)[-1]
    backend = open_backend(url, endpoint_url=endpoint_url)
    try:
        raw = backend.get_bytes(MANIFEST)
        if raw is None:
            raise StorageError(f"{url}: no archived session there (no {MANIFEST})")
        try:
            files = json.loads(raw)["files"]
        except (ValueError, KeyError, TypeError):
            raise StorageError(f"{url}: unreadable {MANIFEST}") from None
        key = hashlib.sha256(url.encode()).hexdigest()[:16]
        folder = cache_root() / key / session_id
        folder.mkdir(parents=True, exist_ok=True)
        for rel, entry in sorted(files.items()):
            _fetch(backend, folder, rel, entry)
    finally:
        backend.close()
    return folder


def _fetch(backend, folder: Path, rel: str, entry: dict) -> None:
    if not isinstance(rel, str) or not _REL.match(rel) or ".." in rel.split("/"):
        raise StorageError(f"manifest names an unsafe path {rel[:80]!r}")
    dest = ensure_inside(folder, folder / rel)
    size, sha = int(entry["size"]), str(entry["sha256"])
    if dest.is_file() and dest.stat().st_size == size and sha256_file(dest) == sha:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.download")
    backend.download(rel, str(tmp))
    got = sha256_file(tmp)
    if got != sha:
        tmp.unlink()
        raise StorageError(f"{rel}: downloaded sha256 {got[:12]}… is not the archive's")
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
