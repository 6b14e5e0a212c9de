"""One session folder: atomic creation, devices, files and events (SPEC §2–§4).

`Session` is usable from any process: metadata changes and event appends hold the
session's file lock, so a recorder, a phone relay and a webcam outlet can all
register into the same folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.errors import DeviceError, LslSessionError, SessionNotFoundError
from lsl_session.events import EventLogFile, SessionLogger
from lsl_session.fsutil import fsync_dir, remove_lock
from lsl_session.layout import SessionPaths
from lsl_session.metadata import (
    new_metadata,
    now_iso,
    read_metadata,
    update_metadata,
    write_metadata,
)

logger = logging.getLogger(__name__)

_MAX_SUFFIX = 1000


#: Statuses after which no writer is expected: helper files are removed.
FINISHED = frozenset({"completed", "empty", "recovered"})


def remove_helper_files(root: Path) -> list[str]:
    """Remove the session's helper files (lock, disk reserve); return their names.

    Only for a finished session (`FINISHED`): a process that locks it later
    creates the lock file again (see `fsutil.remove_lock`).
    """
    removed = []
    reserve = Path(root) / layout.RESERVE_FILE
    if reserve.is_file() and not reserve.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            reserve.unlink()
            removed.append(layout.RESERVE_FILE)
    lock = Path(root) / layout.LOCK_FILE
    if lock.is_file() and not lock.is_symlink():
        remove_lock(lock)
        removed.append(layout.LOCK_FILE)
    return removed


#: A device's ``status`` in ``session_metadata.json``: ``waiting`` (configured,
#: not connected yet), ``connected``, ``disconnected`` (dropped during the
#: session, with ``disconnected_time``), ``stopped`` (its connection ended after
#: the recording), ``missing`` (never connected).
DEVICE_STATUSES = ("waiting", "connected", "disconnected", "stopped", "missing")


def _transition(meta: dict[str, Any], info: dict[str, Any], status: str) -> None:
    """Apply a device status change to its metadata entry (`set_device_status`)."""
    previous = info.get("status")
    now = now_iso()
    info.setdefault("restarts", 0)
    if status == "connected":
        info.setdefault("connected_time", now)
        if previous in ("disconnected", "stopped"):
            info["restarts"] += 1
        info.pop("disconnected_time", None)
    elif status == "disconnected":
        if previous in ("waiting", "missing", None) and "connected_time" not in info:
            return  # never connected: nothing dropped
        recorded = bool((meta.get("recording") or {}).get("runs"))
        if recorded and meta.get("status") != "recording":
            status = "stopped"
        info["disconnected_time"] = now
    elif status == "missing" and info.get("connected_time"):
        return  # it did connect once: never "missing"
    info["status"] = status


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _build_tree(tmp: Path, session_id: str, name: str | None, created: str) -> None:
    for sub in layout.SESSION_SUBDIRS:
        (tmp / sub).mkdir(parents=True)
    paths = SessionPaths(tmp)
    write_metadata(tmp, new_metadata(session_id, name, created))
    log_path = tmp / f"{session_id}_log.json"
    EventLogFile(log_path, paths.lock)
    for sub in ("processing", "exports", "devices", "."):
        fsync_dir(tmp / sub)


def create_session_folder(
    root: Path | str, name: str | None = None, when: datetime | None = None
) -> Path:
    """Create a complete session tree under ``root`` and return its folder.

    The tree is built under a hidden temporary name and renamed into place, so
    a crash never leaves a half tree under a session name. An existing folder is
    never reused: a second session in the same second gets ``_2``, ``_3`` …

    Raises
    ------
    InvalidNameError
        If ``name`` sanitizes to nothing.
    LslSessionError
        If the root cannot be created or written.
    """
    when = when or datetime.now()
    base_id = layout.session_id_for(name, when)
    clean_name = None if name is None else layout.sanitize_name(name)
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LslSessionError(f"cannot create recordings root {root}: {exc}") from None
    created = when.astimezone().isoformat(timespec="microseconds")
    for n in range(1, _MAX_SUFFIX):
        session_id = base_id if n == 1 else f"{base_id}_{n}"
        final = root / session_id
        if final.exists():
            continue
        tmp = root / f"{layout.TMP_PREFIX}{session_id}-{uuid.uuid4().hex[:8]}"
        try:
            _build_tree(tmp, session_id, clean_name, created)
            os.rename(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.exists():
                continue
            raise LslSessionError(f"cannot create session in {root}: {exc}") from None
        fsync_dir(root)
        return final
    raise LslSessionError(f"too many sessions named {base_id} in {root}")


class Session:
    """A session folder on disk.

    Parameters
    ----------
    folder : Path
        An existing session folder (holding ``session_metadata.json``).
    lsl_outlet : bool
        Publish logged events on the session's LSL marker stream. Only the
        process that owns the session should do this.
    fsync_events : bool
        Fsync the event log after every event.
    rig : str | None
        The rig identity in the event stream's source_id.
    """

    def __init__(
        self,
        folder: Path | str,
        *,
        lsl_outlet: bool = False,
        fsync_events: bool = True,
        rig: str | None = None,
    ) -> None:
        self.paths = SessionPaths(Path(folder).resolve())
        if not self.paths.root.is_dir():
            raise SessionNotFoundError(f"{folder}: no such session folder")
        if not self.paths.metadata.exists():
            raise SessionNotFoundError(
                f"{folder}: not a session folder (no {layout.METADATA_FILE})"
            )
        self.logger = SessionLogger(
            self.session_id,
            EventLogFile(self.paths.log, self.paths.lock, fsync=fsync_events),
            lsl_outlet=lsl_outlet,
            rig=rig,
        )

    @classmethod
    def open(cls, folder: Path | str, **kwargs: Any) -> Session:
        """Open an existing session folder (see the class parameters)."""
        return cls(folder, **kwargs)

    @property
    def session_id(self) -> str:
        """The session id (the folder's name)."""
        return self.paths.session_id

    @property
    def root(self) -> Path:
        """The session folder."""
        return self.paths.root

    def metadata(self) -> dict[str, Any]:
        """Read the current metadata."""
        return read_metadata(self.root)

    def update(self, change) -> dict[str, Any]:
        """Apply ``change(metadata)`` under the session lock and write atomically."""
        return update_metadata(self.root, change)

    def set_status(self, status: str, **fields: Any) -> dict[str, Any]:
        """Set ``status`` (and any other top-level fields) atomically."""

        def change(meta: dict[str, Any]) -> None:
            meta["status"] = status
            meta.update(fields)

        return self.update(change)

    def add_device(
        self,
        device_id: str,
        device_type: str,
        capabilities: list[str],
        status: str = "connected",
    ) -> dict[str, Any]:
        """Register a device and create its folders.

        ``status`` is ``connected`` (the device is there) or ``waiting`` (a
        configured device, not connected yet); registering a device again keeps
        its history (``added_time``, ``connected_time``, ``restarts``).

        Raises
        ------
        DeviceError
            For an unknown device type or capability; nothing changes.
        """
        layout.validate_device_id(device_id)
        if device_type not in layout.DEVICE_TYPES:
            raise DeviceError(
                f"unknown device type {device_type!r}; known:"
                f" {', '.join(sorted(layout.DEVICE_TYPES))}"
            )
        if isinstance(capabilities, str) or not all(
            isinstance(c, str) for c in capabilities
        ):
            raise DeviceError("capabilities must be a list of strings")
        unknown = [c for c in capabilities if c not in layout.CAPABILITIES]
        if unknown:
            raise DeviceError(
                f"unknown capabilities {unknown}; known:"
                f" {', '.join(sorted(layout.CAPABILITIES))}"
            )
        for sub in layout.DEVICE_SUBDIRS:
            (self.paths.device(device_id) / sub).mkdir(parents=True, exist_ok=True)
        fsync_dir(self.paths.devices)
        if status not in DEVICE_STATUSES:
            raise DeviceError(f"unknown device status {status!r}")
        base: dict[str, Any] = {
            "device_type": device_type,
            "capabilities": list(capabilities),
            "added_time": now_iso(),
        }
        result: dict[str, Any] = {}

        def change(meta: dict[str, Any]) -> None:
            previous = meta["devices"].get(device_id) or {}
            merged = {**previous, **base}
            merged["added_time"] = previous.get("added_time", base["added_time"])
            if status == "waiting" and previous.get("status"):
                merged["status"] = previous["status"]  # keep what it already is
            else:
                _transition(meta, merged, status)
            meta["devices"][device_id] = merged
            result.clear()
            result.update(merged)

        self.update(change)
        return result

    def set_device_status(self, device_id: str, status: str) -> None:
        """Record a device's connection status (see `DEVICE_STATUSES`).

        ``connected`` stamps ``connected_time`` (first connection) and, after a
        drop, counts one more ``restarts``; ``disconnected`` stamps
        ``disconnected_time``, and becomes ``stopped`` when the session is no
        longer recording and recorded before (the device ended with it, not a
        drop); ``missing`` is a device that never connected.
        """
        if status not in DEVICE_STATUSES:
            raise DeviceError(f"unknown device status {status!r}")

        def change(meta: dict[str, Any]) -> None:
            info = meta["devices"].get(device_id)
            if info is not None:
                _transition(meta, info, status)

        self.update(change)

    def add_file(
        self,
        device_id: str,
        file_type: str,
        file_path: Path | str,
        file_size: int | None = None,
        *,
        sha256: str | None = None,
    ) -> dict[str, Any]:
        """Register a file inside the session folder, with its size and sha256.

        Raises
        ------
        LslSessionError
            If the file does not exist or lies outside the session folder.
        """
        layout.validate_device_id(device_id)
        path = Path(file_path)
        if not path.is_absolute():
            path = self.root / path
        if not path.is_file():
            raise LslSessionError(f"{file_path}: no such file")
        try:
            rel = self.paths.relative(path)
        except ValueError:
            raise LslSessionError(
                f"{file_path}: files must lie inside the session folder {self.root}"
            ) from None
        entry = {
            "file_type": file_type,
            "file_path": rel,
            "file_size": path.stat().st_size if file_size is None else int(file_size),
            "sha256": sha256 or sha256_file(path),
            "created_time": now_iso(),
        }

        def change(meta: dict[str, Any]) -> None:
            files = meta["files"].setdefault(device_id, [])
            files[:] = [f for f in files if f.get("file_path") != rel]
            files.append(entry)

        self.update(change)
        return entry

    def log_event(self, event: str, details: dict[str, Any] | None = None) -> dict:
        """Append an event to the session log (see `SessionLogger.log_event`)."""
        return self.logger.log_event(event, details)

    def close(self) -> None:
        """Release the event outlet; safe to call twice."""
        with contextlib.suppress(Exception):
            self.logger.close()
