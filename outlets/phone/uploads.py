"""Resumable, verified file uploads from phones into the session tree (SPEC §2, §10).

Blocking code: the relay calls it from worker threads. A phone-supplied name is
never a path: the stored file is ``devices/<id>/<kind>/<device_id>_<file_type>_
<YYYYMMDD_HHMMSS>.<ext>``, where only the extension comes from the phone (after
validation). Bytes go to a hidden ``.part`` file named after the declared sha256,
so an interrupted upload resumes from what the relay already has. The ``.part``
is opened with ``O_NOFOLLOW`` inside a folder checked to resolve inside the
session; uploads in progress are capped per device and their remaining bytes are
reserved against the free disk space; stale ``.part`` files are deleted.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from lsl_session import layout
from lsl_session.errors import InvalidNameError, UnsafePathError
from lsl_session.fsutil import ensure_inside, fsync_dir, open_nofollow
from lsl_session.session import Session
from outlets.phone.protocol import ProtocolError, check_file_name, check_sha256

logger = logging.getLogger(__name__)

#: Largest upload accepted by default (8 GiB).
DEFAULT_MAX_UPLOAD = 8 * 1024**3
#: Free space kept in reserve when accepting an upload.
SPACE_RESERVE = 64 * 1024**2
_PART_GLOB = ".upload_*.part"


@dataclass
class Upload:
    """State of one upload in progress."""

    upload_id: str
    device_id: str
    file_type: str
    ext: str
    size: int
    sha256: str
    part: Path
    received: int
    owner: object
    fh: BinaryIO | None = None
    offset_error_sent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class UploadStore:
    """Accept uploads for one session.

    Parameters
    ----------
    session : Session
        Where files land and are registered.
    max_size : int
        Largest declared size accepted.
    max_per_device : int
        Uploads in progress per device id.
    max_parts : int
        Unowned ``.part`` files kept per device folder (the oldest go first).
    part_max_age_s : float
        Unowned ``.part`` files untouched this long are deleted.

    Notes
    -----
    Thread-safe: one lock guards the table of uploads; a given upload is only
    touched by the connection (``owner``) that offered it.
    """

    def __init__(
        self,
        session: Session,
        *,
        max_size: int = DEFAULT_MAX_UPLOAD,
        max_per_device: int = 4,
        max_parts: int = 16,
        part_max_age_s: float = 6 * 3600.0,
    ) -> None:
        self.session = session
        self.max_size = int(max_size)
        self.max_per_device = int(max_per_device)
        self.max_parts = int(max_parts)
        self.part_max_age_s = float(part_max_age_s)
        self._lock = threading.Lock()
        self._uploads: dict[str, Upload] = {}
        self._ids = itertools.count(1)
        devices = self.session.paths.devices
        for folder in {p.parent for p in devices.glob(f"*/*/{_PART_GLOB}")}:
            try:
                ensure_inside(self.session.paths.root, folder)
            except UnsafePathError:
                continue  # never delete through a link out of the session
            self.prune(folder)

    def offer(
        self,
        device_id: str,
        *,
        name: str,
        size: int,
        sha256: str,
        file_type: str,
        owner: object,
    ) -> dict[str, Any]:
        """Accept an offer; return ``{"upload_id", "have"}`` or ``{"done", …}``.

        Raises
        ------
        ProtocolError
            ``bad_file_type``, ``bad_name``, ``bad_size``, ``bad_message``,
            ``too_many_uploads``, ``no_space``, ``upload_busy`` or
            ``storage_error``.
        """
        try:
            folder = layout.folder_for_file_type(file_type)
        except InvalidNameError:
            raise ProtocolError(
                "bad_file_type",
                f"file_type {str(file_type)[:40]!r} must be one of "
                f"{', '.join(sorted(layout.FILE_TYPE_FOLDERS))}",
            ) from None
        ext = check_file_name(name, folder)
        sha256 = check_sha256(sha256)
        if not isinstance(size, int) or not 1 <= size <= self.max_size:
            raise ProtocolError("bad_size", f"size must be 1..{self.max_size} bytes")
        for entry in self.session.metadata().get("files", {}).get(device_id, []):
            if entry.get("sha256") == sha256 and entry.get("file_type") == file_type:
                return {
                    "done": True,
                    "file_path": entry["file_path"],
                    "size": size,
                    "sha256": sha256,
                }
        target = self._folder(device_id, file_type)
        part = target / f".upload_{file_type}_{sha256[:32]}_{size}.part"
        with self._lock:
            again = None
            for up in self._uploads.values():
                if up.part == part:
                    if up.owner is not owner:
                        raise ProtocolError(
                            "upload_busy",
                            "this file is being uploaded on another connection",
                        )
                    again = up
            if again is not None:  # offered again on the same connection
                self._forget(again)
            active = [u for u in self._uploads.values() if u.device_id == device_id]
            if len(active) >= self.max_per_device:
                raise ProtocolError(
                    "too_many_uploads",
                    f"at most {self.max_per_device} uploads in progress per device;"
                    " finish one first",
                )
            fh = self._open_part(part)
            have = 0
            try:
                have = os.fstat(fh.fileno()).st_size
                if have > size:
                    have = 0
                reserved = sum(u.size - u.received for u in self._uploads.values())
                free = shutil.disk_usage(target).free
                if free - reserved < size - have + SPACE_RESERVE:
                    raise ProtocolError(
                        "no_space",
                        f"not enough free disk space ({free >> 20} MiB free, "
                        f"{reserved >> 20} MiB promised to uploads in progress)",
                    )
                fh.truncate(have)
                fh.seek(have)
            except BaseException:
                fh.close()
                if have == 0:
                    part.unlink(missing_ok=True)
                raise
            upload_id = f"u{next(self._ids)}"
            self._uploads[upload_id] = Upload(
                upload_id,
                device_id,
                file_type,
                ext,
                size,
                sha256,
                part,
                have,
                owner,
                fh,
            )
        logger.info(
            "upload %s from %s: %s %d bytes, have %d",
            upload_id,
            device_id,
            file_type,
            size,
            have,
        )
        return {"upload_id": upload_id, "have": have}

    def _folder(self, device_id: str, file_type: str) -> Path:
        """Create the device folder, refusing one that resolves outside the session."""
        target = self.session.paths.device_folder(device_id, file_type)
        root = self.session.paths.root
        try:
            ensure_inside(root, target)  # no symlinked component: before mkdir
            target.mkdir(parents=True, exist_ok=True)
            ensure_inside(root, target)
        except UnsafePathError as exc:
            logger.warning("upload refused: %s", exc)
            raise ProtocolError(
                "storage_error",
                "the upload folder is not a plain folder of the session",
            ) from None
        self.prune(target)
        return target

    @staticmethod
    def _open_part(part: Path) -> BinaryIO:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = open_nofollow(part, flags, 0o600)
        except (OSError, UnsafePathError) as exc:
            logger.warning("cannot open %s: %s", part, exc)
            raise ProtocolError(
                "storage_error", "the relay cannot store this upload"
            ) from None
        return os.fdopen(fd, "r+b")

    def prune(self, folder: Path) -> int:
        """Delete stale unowned ``.part`` files in ``folder``; return how many.

        Empty ones and ones untouched for ``part_max_age_s`` go, then the oldest
        beyond ``max_parts``.
        """
        with self._lock:
            owned = {u.part for u in self._uploads.values()}
        parts = []
        for p in folder.glob(_PART_GLOB):
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if p not in owned:
                parts.append((st.st_mtime, st.st_size, p))
        parts.sort()
        now = time.time()
        stale = [p for m, n, p in parts if n == 0 or now - m > self.part_max_age_s]
        keep = [p for _, _, p in parts if p not in stale]
        stale += keep[: max(0, len(keep) - self.max_parts)]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            logger.info("deleted %d stale upload parts in %s", len(stale), folder)
        return len(stale)

    def _get(self, upload_id: str, owner: object) -> Upload:
        with self._lock:
            up = self._uploads.get(upload_id)
        if up is None or up.owner is not owner:
            raise ProtocolError("unknown_upload", f"no upload {upload_id[:40]!r} here")
        return up

    def write(self, upload_id: str, offset: int, data: bytes, owner: object) -> int:
        """Append a chunk at ``offset`` (must equal the bytes received so far).

        After a ``bad_offset`` error, further misplaced chunks are dropped without
        another error until a chunk at the right offset arrives.

        Raises
        ------
        ProtocolError
            ``unknown_upload``, ``bad_offset`` (with ``have``) or
            ``size_exceeded`` (the upload is dropped).
        """
        up = self._get(upload_id, owner)
        if offset != up.received:
            if up.offset_error_sent:  # chunks already in flight: drop quietly
                return up.received
            up.offset_error_sent = True
            raise ProtocolError(
                "bad_offset",
                f"chunk offset {offset} but relay has {up.received}",
                have=up.received,
            )
        up.offset_error_sent = False
        if up.received + len(data) > up.size:
            self._drop(up, delete=True)
            raise ProtocolError(
                "size_exceeded",
                f"more bytes than the declared size {up.size}; upload discarded",
            )
        with up.lock:
            if up.fh is None:
                raise ProtocolError("unknown_upload", "upload was closed")
            up.fh.write(data)
            up.received += len(data)
        return up.received

    def finish(self, upload_id: str, owner: object, when: datetime) -> dict[str, Any]:
        """Verify size and sha256, move the file into place and register it.

        Returns
        -------
        dict
            The metadata entry (``file_path`` relative to the session, size, sha256).

        Raises
        ------
        ProtocolError
            ``incomplete`` (the upload stays resumable) or ``sha256_mismatch``
            (the bytes are discarded).
        """
        up = self._get(upload_id, owner)
        if up.received != up.size:
            raise ProtocolError(
                "incomplete",
                f"relay has {up.received} of {up.size} bytes",
                have=up.received,
            )
        assert up.fh is not None
        up.fh.flush()
        os.fsync(up.fh.fileno())
        up.fh.seek(0)
        digest = hashlib.sha256()
        while block := up.fh.read(1 << 20):
            digest.update(block)
        if digest.hexdigest() != up.sha256:
            self._drop(up, delete=True)
            raise ProtocolError(
                "sha256_mismatch", "sha256 of the received bytes does not match"
            )
        self._drop(up, delete=False)
        dest = self._destination(up, when)
        os.rename(up.part, dest)  # replaces a planted link, never follows it
        fsync_dir(dest.parent)
        entry = self.session.add_file(
            up.device_id, up.file_type, dest, sha256=up.sha256
        )
        logger.info("upload %s stored as %s", upload_id, entry["file_path"])
        return entry

    def release(self, owner: object) -> None:
        """Close the uploads of a closed connection; keep non-empty parts to resume."""
        with self._lock:
            mine = [u for u in self._uploads.values() if u.owner is owner]
        for up in mine:
            self._drop(up, delete=up.received == 0)

    def _destination(self, up: Upload, when: datetime) -> Path:
        folder = up.part.parent
        name = layout.device_file_name(up.device_id, up.file_type, when, up.ext)
        dest = folder / name
        stem = name.rsplit(".", 1)[0]
        n = 2
        while os.path.lexists(dest):
            dest = folder / f"{stem}_{n}.{up.ext}"
            n += 1
        return dest

    def _drop(self, up: Upload, *, delete: bool) -> None:
        with self._lock:
            self._uploads.pop(up.upload_id, None)
        self._close(up, delete=delete)

    def _forget(self, up: Upload) -> None:
        """Drop ``up`` from the table (caller holds the lock) and close its file."""
        self._uploads.pop(up.upload_id, None)
        self._close(up, delete=False)

    @staticmethod
    def _close(up: Upload, *, delete: bool) -> None:
        with up.lock:
            if up.fh is not None:
                up.fh.close()
                up.fh = None
        if delete:
            up.part.unlink(missing_ok=True)
