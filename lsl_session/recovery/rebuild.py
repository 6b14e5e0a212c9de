"""Rebuild session_metadata.json from the folder, and check registered files."""

from __future__ import annotations

import logging
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.fsutil import fsync_dir
from lsl_session.layout import SessionPaths
from lsl_session.limits import clip_repr
from lsl_session.metadata import new_metadata
from lsl_session.session import sha256_file

logger = logging.getLogger(__name__)

#: Device sub-folder → the file type assumed when the name does not tell.
_FOLDER_TYPES = {
    "rgb_videos": "rgb",
    "thermal_videos": "thermal",
    "sensor_data": "sensor",
}
#: File type → device capability (for devices rebuilt without an event log).
_CAPABILITIES = {
    "rgb": "rgb_video",
    "video": "rgb_video",
    "thermal": "thermal_video",
    "gsr": "gsr_data",
    "motion": "motion_data",
    "accel": "motion_data",
    "audio": "audio_recording",
}
_DEVICE_FILE = re.compile(
    r"^(?P<dev>.+?)_(?P<type>[A-Za-z0-9-]+)_\d{8}_\d{6}(?:_\d+)?\."
)
_WEBCAM_FILE = re.compile(r"^webcam_(?P<n>\d+)_\d{8}_\d{6}")
_INCOMPLETE = (".part", ".tmp")


def check_files(folder: Path | str, meta: dict[str, Any]) -> list[str]:
    """Compare every registered file with its recorded size and sha256.

    Parameters
    ----------
    folder : Path
        The session folder.
    meta : dict
        Its metadata (``files``: device id → entries).

    Returns
    -------
    list of str
        One line per missing, changed or unsafe entry; empty when all match.
        Nothing is modified.
    """
    paths = SessionPaths(Path(folder))
    problems: list[str] = []
    for device_id, entries in (meta.get("files") or {}).items():
        for entry in entries or []:
            rel = entry.get("file_path", "")
            try:
                target = paths.resolve(rel)
            except Exception:
                problems.append(f"{device_id}: bad file path {clip_repr(rel)}")
                continue
            if not target.is_file():
                problems.append(f"{device_id}: missing file {rel}")
                continue
            size = target.stat().st_size
            if entry.get("file_size") not in (None, size):
                problems.append(
                    f"{device_id}: changed file {rel} (size {size}, "
                    f"registered {entry.get('file_size')})"
                )
            elif entry.get("sha256") and sha256_file(target) != entry["sha256"]:
                problems.append(f"{device_id}: changed file {rel} (sha256 differs)")
    return problems


def _file_entry(paths: SessionPaths, path: Path, file_type: str) -> dict[str, Any]:
    stat = path.stat()
    when = datetime.fromtimestamp(stat.st_mtime).astimezone()
    return {
        "file_type": file_type,
        "file_path": paths.relative(path),
        "file_size": stat.st_size,
        "sha256": sha256_file(path),
        "created_time": when.isoformat(timespec="microseconds"),
        "rebuilt": True,
    }


def _unresolved(paths: SessionPaths, path: Path) -> str:
    """``path`` relative to the session, without resolving links (they may leave it)."""
    return Path(os.path.relpath(path, paths.root)).as_posix()


def _regular_files(
    top: Path, paths: SessionPaths, problems: list[str], *, recursive: bool = True
) -> list[Path]:
    """Regular files below ``top`` in sorted order; symbolic links are named, not followed."""
    found: list[Path] = []
    for base, dirs, names in os.walk(top, followlinks=False):
        here = Path(base)
        for name in sorted(dirs):
            if (here / name).is_symlink():
                problems.append(
                    f"{_unresolved(paths, here / name)} is a symbolic link; not followed"
                )
        for name in names:
            path = here / name
            if path.is_symlink():
                problems.append(
                    f"{_unresolved(paths, path)} is a symbolic link; not followed"
                )
            elif path.is_file():
                found.append(path)
        if not recursive:
            break
    return sorted(found)


def scan_device_files(
    folder: Path, events: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[str]]:
    """Find devices and their files from ``devices/<id>/`` and ``webcam/``.

    Device types come from ``device_connected`` events when the log has them;
    capabilities are inferred from the file types found.

    Returns
    -------
    devices, files, problems
        The ``devices`` and ``files`` metadata sections, and findings (e.g.
        incomplete uploads, which are not registered).
    """
    paths = SessionPaths(folder)
    known = {
        e.get("device_id"): e
        for e in events
        if e.get("event") == "device_connected" and e.get("device_id")
    }
    devices: dict[str, Any] = {}
    files: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    device_dirs = []
    for p in sorted(paths.devices.glob("*")):
        if p.is_symlink():
            problems.append(f"{_unresolved(paths, p)} is a symbolic link; not followed")
        elif p.is_dir():
            device_dirs.append(p)
    for ddir in device_dirs:
        dev = ddir.name
        for path in _regular_files(ddir, paths, problems):
            if path.name.startswith(".") or path.name.endswith(_INCOMPLETE):
                problems.append(f"{dev}: incomplete file {paths.relative(path)}")
                continue
            match = _DEVICE_FILE.match(path.name)
            if match and match.group("dev") == dev:
                ftype = match.group("type")
            else:
                ftype = _FOLDER_TYPES.get(path.parent.name, "file")
            files.setdefault(dev, []).append(_file_entry(paths, path, ftype))
    for path in _regular_files(paths.webcam, paths, problems, recursive=False):
        if path.name.startswith(".") or path.name.endswith(_INCOMPLETE):
            problems.append(f"webcam: incomplete file {paths.relative(path)}")
            continue
        match = _WEBCAM_FILE.match(path.name)
        dev = f"webcam_{match.group('n')}" if match else "webcam"
        files.setdefault(dev, []).append(_file_entry(paths, path, "video"))
    for dev in sorted({d.name for d in device_dirs} | set(files)):
        event = known.get(dev, {})
        dtype = event.get("device_type")
        if dtype is None and dev.startswith("webcam"):
            dtype = "pc_webcam"
        caps = sorted(
            {_CAPABILITIES[f["file_type"]] for f in files.get(dev, [])}
            & layout.CAPABILITIES
            if files.get(dev)
            else set()
        )
        devices[dev] = {
            "device_type": dtype,
            "capabilities": caps,
            "added_time": event.get("timestamp"),
            "status": "unknown",
            "rebuilt": True,
        }
    return devices, files, problems


def _start_time(session_id: str) -> str | None:
    parsed = layout.parse_session_id(session_id)
    if parsed is None:
        return None
    when = datetime.strptime(parsed[1], layout.TIMESTAMP_FORMAT).astimezone()
    return when.isoformat(timespec="microseconds")


def rebuild_metadata(
    folder: Path,
    events: list[dict[str, Any]],
    recording: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """Build a metadata object from the folder, the event log and the XDF summary.

    Parameters
    ----------
    folder : Path
        The session folder (its name is the session id).
    events : list of dict
        The complete events of the log (may be empty).
    recording : dict
        The ``recording`` section computed from the XDF files.

    Returns
    -------
    metadata, problems
        The rebuilt metadata (status ``interrupted``) and findings.
    """
    session_id = folder.name
    parsed = layout.parse_session_id(session_id)
    name = parsed[0] if parsed else None
    start_event = next((e for e in events if e.get("event") == "session_start"), {})
    if start_event.get("name") is not None:
        name = layout.sanitize_name(str(start_event["name"]))
    elif name == layout.DEFAULT_PREFIX:
        name = None
    meta = new_metadata(session_id, name or None, _start_time(session_id))
    meta["status"] = "interrupted"
    devices, files, problems = scan_device_files(folder, events)
    meta["devices"] = devices
    meta["files"] = files
    meta["recording"] = recording
    meta["rebuilt_from"] = "folder, event log and XDF headers"
    for event in events:
        if event.get("event") == "session_end":
            meta["end_time"] = event.get("timestamp")
            meta["duration_s"] = event.get("duration_s")
    return meta, problems


def keep_corrupt_copy(path: Path) -> Path:
    """Copy a corrupt metadata file to ``<name>.corrupt-<timestamp>`` (fsynced)."""
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    shutil.copy2(path, target)
    with open(target, "rb+") as fh:
        os.fsync(fh.fileno())
    fsync_dir(path.parent)
    return target
