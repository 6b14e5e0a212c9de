"""The session directory tree and every file name the project writes (SPEC §2).

No other module formats session paths: they all ask this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lsl_session.errors import InvalidNameError, LslSessionError

METADATA_FILE = "session_metadata.json"
LOCK_FILE = ".session.lock"
#: Pre-allocated room for the last writes on a full disk (only while recording).
RESERVE_FILE = ".lsl_session_reserve"
TMP_PREFIX = ".creating-"
MAX_NAME_LEN = 64
DEFAULT_PREFIX = "session"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"

#: Folders every session holds, relative to the session folder.
SESSION_SUBDIRS: tuple[str, ...] = (
    "devices",
    "webcam",
    "processing/hand_segmentation",
    "processing/synchronized_data",
    "exports/csv",
    "exports/matlab",
)

#: Per-device folders, created when a device is added.
DEVICE_SUBDIRS: tuple[str, ...] = ("rgb_videos", "thermal_videos", "sensor_data")

DEVICE_TYPES: set[str] = {"android_phone", "pc_webcam", "shimmer_gsr", "thermal_camera"}
CAPABILITIES: set[str] = {
    "rgb_video",
    "thermal_video",
    "gsr_data",
    "motion_data",
    "orientation_data",
    "audio_recording",
}
#: File type → device sub-folder. Anything registered with ``register_file_type``
#: joins this table.
FILE_TYPE_FOLDERS: dict[str, str] = {
    "rgb": "rgb_videos",
    "thermal": "thermal_videos",
    "gsr": "sensor_data",
    "motion": "sensor_data",
    "audio": "sensor_data",
    "ppg": "sensor_data",
    "accel": "sensor_data",
    "sensor": "sensor_data",
}

_INVALID = re.compile(r"[^A-Za-z0-9_-]+")
_REPEATS = re.compile(r"([_-])[_-]*")
_SESSION_ID = re.compile(r"^(?:(?P<name>.+)_)?(?P<stamp>\d{8}_\d{6})(?:_(?P<n>\d+))?$")
# \Z, not $: "$" also matches before a trailing newline ("phone_1\n").
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def register_device_type(name: str) -> None:
    """Allow an additional device type (e.g. ``"eye_tracker"``) in this process."""
    DEVICE_TYPES.add(sanitize_name(name))


def register_capability(name: str) -> None:
    """Allow an additional device capability in this process."""
    CAPABILITIES.add(sanitize_name(name))


def register_file_type(file_type: str, folder: str) -> None:
    """Map an additional device file type to one of the device sub-folders."""
    if folder not in DEVICE_SUBDIRS:
        raise LslSessionError(f"folder must be one of {DEVICE_SUBDIRS}, got {folder!r}")
    FILE_TYPE_FOLDERS[sanitize_name(file_type)] = folder


def sanitize_name(name: str) -> str:
    """Make ``name`` safe on every filesystem (SPEC §2).

    Keeps ``[A-Za-z0-9_-]``, maps any other run of characters to ``_``, collapses
    repeated separators, strips ``_``/``-`` at both ends and cuts to 64 characters.

    Raises
    ------
    InvalidNameError
        If ``name`` is not a string or nothing usable remains.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"name must be a string, got {type(name).__name__}")
    cleaned = _REPEATS.sub(r"\1", _INVALID.sub("_", name)).strip("_-")
    cleaned = cleaned[:MAX_NAME_LEN].strip("_-")
    if not cleaned:
        raise InvalidNameError(f"name {name[:80]!r} is empty after sanitizing")
    return cleaned


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a safe folder name, else raise `InvalidNameError`."""
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        shown = repr(device_id[:40]) if isinstance(device_id, str) else "a non-string"
        raise InvalidNameError(
            f"device id {shown} must be 1-64 characters of [A-Za-z0-9_-]"
        )
    return device_id


def session_id_for(name: str | None, when: datetime) -> str:
    """Return ``[name_]YYYYMMDD_HHMMSS`` (``session_…`` when ``name`` is None)."""
    prefix = DEFAULT_PREFIX if name is None else sanitize_name(name)
    return f"{prefix}_{when.strftime(TIMESTAMP_FORMAT)}"


def parse_session_id(session_id: str) -> tuple[str, str] | None:
    """Split a session id into (name, timestamp), or None if it is not one."""
    match = _SESSION_ID.match(session_id)
    if not match:
        return None
    return match.group("name") or "", match.group("stamp")


def file_stamp(when: datetime) -> str:
    """Format the ``YYYYMMDD_HHMMSS`` part of a file name."""
    return when.strftime(TIMESTAMP_FORMAT)


def device_file_name(device_id: str, file_type: str, when: datetime, ext: str) -> str:
    """Return ``<device_id>_<file_type>_YYYYMMDD_HHMMSS.<ext>``."""
    ext = ext.lstrip(".")
    if not re.fullmatch(r"[A-Za-z0-9]{1,10}", ext):
        raise InvalidNameError(f"file extension {ext!r} is not allowed")
    return (
        f"{validate_device_id(device_id)}_{sanitize_name(file_type)}_"
        f"{file_stamp(when)}.{ext}"
    )


def webcam_file_name(n: int, when: datetime, ext: str = "mp4") -> str:
    """Return ``webcam_<n>_YYYYMMDD_HHMMSS.<ext>``."""
    return f"webcam_{int(n)}_{file_stamp(when)}.{ext.lstrip('.')}"


def folder_for_file_type(file_type: str) -> str:
    """Return the device sub-folder for a file type (rgb → rgb_videos, …)."""
    try:
        return FILE_TYPE_FOLDERS[file_type]
    except KeyError:
        known = ", ".join(sorted(FILE_TYPE_FOLDERS))
        raise InvalidNameError(f"unknown file type {file_type!r}; known: {known}")


@dataclass(frozen=True, slots=True)
class SessionPaths:
    """All paths of one session folder."""

    root: Path

    @property
    def session_id(self) -> str:
        """The folder name, which is the session id."""
        return self.root.name

    @property
    def metadata(self) -> Path:
        """``session_metadata.json``."""
        return self.root / METADATA_FILE

    @property
    def lock(self) -> Path:
        """The inter-process lock file guarding metadata updates."""
        return self.root / LOCK_FILE

    @property
    def log(self) -> Path:
        """``<session_id>_log.json``."""
        return self.root / f"{self.session_id}_log.json"

    def xdf(self, part: int = 1, *, compressed: bool = False) -> Path:
        """``<session_id>.xdf``, or ``<session_id>_partNNN.xdf`` for part ≥ 2.

        ``compressed`` gives the ``.xdf.gz`` name (`~lsl_session.xdf.compressed`).
        """
        suffix = ".xdf.gz" if compressed else ".xdf"
        if part <= 1:
            return self.root / f"{self.session_id}{suffix}"
        return self.root / f"{self.session_id}_part{part:03d}{suffix}"

    @property
    def devices(self) -> Path:
        """``devices/``."""
        return self.root / "devices"

    def device(self, device_id: str) -> Path:
        """``devices/<device_id>/``."""
        return self.devices / validate_device_id(device_id)

    def device_folder(self, device_id: str, file_type: str) -> Path:
        """The folder a device file of ``file_type`` belongs in."""
        return self.device(device_id) / folder_for_file_type(file_type)

    @property
    def webcam(self) -> Path:
        """``webcam/``."""
        return self.root / "webcam"

    @property
    def processing(self) -> Path:
        """``processing/``."""
        return self.root / "processing"

    @property
    def hand_segmentation(self) -> Path:
        """``processing/hand_segmentation/``."""
        return self.processing / "hand_segmentation"

    @property
    def synchronized_data(self) -> Path:
        """``processing/synchronized_data/``."""
        return self.processing / "synchronized_data"

    @property
    def exports_csv(self) -> Path:
        """``exports/csv/``."""
        return self.root / "exports" / "csv"

    @property
    def exports_matlab(self) -> Path:
        """``exports/matlab/``."""
        return self.root / "exports" / "matlab"

    def relative(self, path: Path | str) -> str:
        """Return ``path`` relative to the session folder, in POSIX form."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def resolve(self, relative: str) -> Path:
        """Turn a stored relative path back into a path inside the session folder."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise LslSessionError(f"path {relative!r} points outside the session")
        return path
