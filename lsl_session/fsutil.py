"""Durable file primitives: atomic replace, folder fsync, inter-process locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from lsl_session.errors import DiskSpaceError

# read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()


def fsync_dir(path: Path) -> None:
    """Fsync a folder so a rename or a new entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, ``os.replace``, dir fsync.

    A reader sees either the old or the new content, whatever moment the process
    dies at.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; give the result the mode of any other new file
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` across threads and processes.

    ``flock`` alone does not exclude threads of one process that open the file
    separately, so a per-path re-entrant thread lock is taken first.
    """
    key = str(Path(lock_path).resolve())
    with _thread_locks_guard:
        tlock = _thread_locks.setdefault(key, threading.RLock())
    with tlock:
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def check_room(folder: Path, need: float, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless ``need`` bytes fit in ``folder``'s disk.

    Parameters
    ----------
    folder : Path
        An existing folder on the target file system.
    need : float
        Bytes the output is estimated to take (an upper bound).
    what : str
        What would be written (for the message).
    """
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DiskSpaceError(
            f"{what} would need about {need / 1e6:.1f} MB but only "
            f"{free / 1e6:.1f} MB are free in {folder}; nothing was written"
        )
