"""The recorder host's end of a file delivery: checked path, resumable, sha256.

An agent sends ``{"type": "put", "path": "webcam/webcam_2_….mp4", "device_id",
"file_type", "size", "sha256"}`` and then, after the hub's ``offset`` answer, the
bytes from that offset on. The bytes go to ``<session>/.incoming/<sha256>.part``
(append-only, fsynced); a delivery cut anywhere resumes from what the part holds.
When the part is whole its sha256 is computed here and compared with the agent's;
only then is it renamed into place, registered in the metadata and logged
(``file_received``), and the hub's digest is sent back for the agent to compare.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.agents.wire import BLOCK, Channel, WireError
from lsl_session.errors import LslSessionError
from lsl_session.fsutil import check_room, ensure_inside, fsync_dir, open_nofollow
from lsl_session.session import Session, sha256_file

logger = logging.getLogger(__name__)

INCOMING = ".incoming"
#: Bytes written between two fsyncs of a part file.
FSYNC_EVERY = 64 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_SHA = re.compile(r"[0-9a-f]{64}\Z")
_FILE_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")


@dataclass(frozen=True, slots=True)
class Put:
    """One validated delivery request."""

    path: str
    device_id: str
    file_type: str
    size: int
    sha256: str


def parse_put(msg: dict[str, Any], allowed: set[str], webcams: bool, cap: int) -> Put:
    """Validate a ``put``: the path must be one of the host's own places.

    Parameters
    ----------
    msg : dict
        The agent's message.
    allowed : set of str
        Device ids of that host (``devices/<id>/…``).
    webcams : bool
        Whether the host runs a webcam (``webcam/<name>``).
    cap : int
        Largest file accepted (bytes).

    Raises
    ------
    LslSessionError
        Naming what is wrong; nothing is written.
    """
    path, device_id = msg.get("path"), msg.get("device_id")
    file_type, size, sha = msg.get("file_type"), msg.get("size"), msg.get("sha256")
    if not isinstance(path, str) or len(path) > 300:
        raise LslSessionError("put: bad path")
    parts = path.split("/")
    ok = all(_NAME.match(p) for p in parts)
    if parts[0] == "webcam":
        ok = ok and webcams and len(parts) == 2
    elif parts[0] == "devices":
        ok = (
            ok
            and len(parts) == 4
            and parts[1] in allowed
            and parts[2] in set(layout.FILE_TYPE_FOLDERS.values())
        )
    else:
        ok = False
    if not ok:
        raise LslSessionError(f"put: {path[:100]!r} is not a place of this host")
    if not isinstance(device_id, str) or device_id not in allowed:
        raise LslSessionError(f"put: device {str(device_id)[:40]!r} is not this host's")
    if not isinstance(file_type, str) or not _FILE_TYPE.match(file_type):
        raise LslSessionError("put: bad file_type")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= cap:
        raise LslSessionError(f"put: size must be 0…{cap} bytes")
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise LslSessionError("put: bad sha256")
    return Put(path, device_id, file_type, size, sha)


class PartLocks:
    """One delivery per part file at a time; a newer one cuts the older off."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._socks: dict[str, Any] = {}

    def claim(self, key: str, sock: Any, timeout: float) -> bool:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            old = self._socks.get(key)
        if old is not None:
            try:
                old.shutdown(2)  # the stalled older delivery ends at once
            except OSError:
                pass
        if not lock.acquire(timeout=timeout):
            return False
        with self._guard:
            self._socks[key] = sock
        return True

    def release(self, key: str) -> None:
        with self._guard:
            self._socks.pop(key, None)
            lock = self._locks.get(key)
        if lock is not None and lock.locked():
            lock.release()


def receive_file(
    chan: Channel, session: Session, put: Put, host: str, locks: PartLocks
) -> dict[str, Any] | None:
    """Receive one file into ``session`` (see the module doc).

    Returns
    -------
    dict | None
        The registered file entry, or None when the delivery was cut (the part
        stays for the agent's resume).

    Raises
    ------
    LslSessionError
        When the request cannot be honoured (the agent is told why first).
    """
    root = session.root
    final = root / put.path
    ensure_inside(root, final)
    if final.exists():
        if final.is_file() and sha256_file(final) == put.sha256:
            chan.send({"type": "have", "sha256": put.sha256})
            return None
        raise LslSessionError(f"{put.path} exists with other content")
    incoming = root / INCOMING
    incoming.mkdir(exist_ok=True)
    part = ensure_inside(root, incoming / f"{put.sha256}.part")
    if not locks.claim(put.sha256, chan.sock, timeout=30.0):
        raise LslSessionError(f"{put.path}: another delivery of it is running")
    try:
        return _receive(chan, session, put, host, final, part)
    finally:
        locks.release(put.sha256)


def _receive(
    chan: Channel, session: Session, put: Put, host: str, final: Path, part: Path
) -> dict[str, Any] | None:
    fd = open_nofollow(part, os.O_WRONLY | os.O_CREAT)
    try:
        offset = os.fstat(fd).st_size
        if offset > put.size:
            os.ftruncate(fd, 0)
            offset = 0
        check_room(session.root, put.size - offset, f"{put.path} from {host}")
        chan.send({"type": "offset", "offset": offset})
        os.lseek(fd, offset, os.SEEK_SET)
        done, unsynced = offset, 0
        try:
            while done < put.size:
                data = chan.take_buffered(put.size - done)
                if not data:
                    try:
                        data = chan.sock.recv(min(BLOCK, put.size - done))
                    except OSError as exc:
                        raise WireError(str(exc)) from None
                    if not data:
                        raise WireError("agent closed the connection")
                os.write(fd, data)
                done += len(data)
                unsynced += len(data)
                if unsynced >= FSYNC_EVERY:
                    os.fsync(fd)
                    unsynced = 0
        except WireError as exc:
            os.fsync(fd)
            logger.info(
                "delivery of %s from %s cut at %d: %s", put.path, host, done, exc
            )
            return None
        os.fsync(fd)
    finally:
        os.close(fd)
    digest = sha256_file(part)
    if digest != put.sha256:
        part.unlink()
        chan.send({"type": "error", "reason": "sha256 mismatch", "sha256": digest})
        session.log_event(
            "error",
            {"category": "file", "message": f"{put.path} from {host}: sha256 mismatch"},
        )
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    ensure_inside(session.root, final)
    os.replace(part, final)
    fsync_dir(final.parent)
    entry = session.add_file(put.device_id, put.file_type, final, sha256=digest)
    session.log_event(
        "file_received",
        {
            "device_id": put.device_id,
            "file_type": put.file_type,
            "file_path": entry["file_path"],
            "file_size": put.size,
            "sha256": digest,
            "host": host,
            "resumed_from": offset,
        },
    )
    chan.send({"type": "done", "sha256": digest, "resumed_from": offset})
    return entry
