"""Durable file primitives: atomic replace, folder fsync, inter-process locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from lsl_session.errors import DiskSpaceError, UnsafePathError

# read once at import (os.umask can only be read by setting it)
_UMASK = os.umask(0o022)
os.umask(_UMASK)

_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()


def shared_mkdtemp(prefix: str, parent: Path) -> Path:
    """``tempfile.mkdtemp`` with the usual folder mode (0755 under umask 022), not 0700.

    For staging folders that are renamed into place: colleagues read the result.
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def fsync_dir(path: Path) -> None:
    """Fsync a folder so a rename or a new entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_inside(root: Path, path: Path) -> Path:
    """Return ``path`` if writing there stays inside ``root``; else raise.

    Every existing component below ``root`` (``path`` included) must be a real
    folder or file, not a symbolic link, and ``path`` must not climb out with
    ``..``. ``root`` itself may be reached through links (the user chose it).

    Raises
    ------
    UnsafePathError
        If a component is a symbolic link or ``path`` is outside ``root``.
    """
    base = Path(os.path.abspath(root))
    target = Path(os.path.abspath(path))
    try:
        rel = target.relative_to(base)
    except ValueError:
        raise UnsafePathError(f"{path}: outside the session folder {root}") from None
    cur = base
    for part in rel.parts:
        cur = cur / part
        if cur.is_symlink():
            raise UnsafePathError(
                f"{cur.relative_to(base)} in {base.name} is a symbolic link; "
                "refusing to write through it"
            )
    return path


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` with ``O_NOFOLLOW``: a symbolic link at ``path`` is refused.

    Raises
    ------
    UnsafePathError
        If ``path`` is a symbolic link (``ELOOP``).
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{path}: is a symbolic link; refusing to write through it"
            ) from None
        raise


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
        while True:
            fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, key):
                break
            os.close(fd)  # removed (`remove_lock`) while we waited: lock the new one
        try:
            yield
        finally:
            os.close(fd)


def _same_file(fd: int, path: str) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def remove_lock(lock_path: Path) -> None:
    """Delete a lock file made by `locked`, holding the lock while doing it.

    A process waiting for the old file sees it is gone and locks a new one, so
    the lock stays exclusive; a later `locked` simply creates the file again.
    """
    path = Path(lock_path)
    if not path.exists():
        return
    with locked(path), contextlib.suppress(FileNotFoundError):
        os.unlink(path)


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


def reserve_space(path: Path, nbytes: int) -> bool:
    """Allocate ``nbytes`` in a new file at ``path`` (fsynced); False if impossible.

    Deleting it later (:func:`release_reserve`) gives back room for the last
    metadata and log writes when another writer has filled the disk.
    """
    try:
        fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except (OSError, UnsafePathError):
        return False
    try:
        os.posix_fallocate(fd, 0, nbytes)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        release_reserve(path)
        return False
    os.close(fd)
    return True


def release_reserve(path: Path) -> None:
    """Delete a file made by :func:`reserve_space` (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
