"""Finding and summarising session folders: `list`, `info` and unfinished sessions."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.errors import MetadataError, SessionNotFoundError
from lsl_session.layout import SessionPaths
from lsl_session.lifecycle import UNFINISHED
from lsl_session.limits import clip_repr
from lsl_session.metadata import read_metadata


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/pid/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name may hold spaces and parentheses: split after the last ")"
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def owner_record() -> dict[str, Any]:
    """Identify the running process that owns a session.

    pid and host, plus the boot id and the process start time where /proc
    exists, so a pid reused after a crash and reboot is not taken for the owner.
    """
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "started": _process_start(pid),
    }


def owner_alive(meta: dict[str, Any]) -> bool:
    """True if the process recorded as the session's owner is still running here."""
    owner = meta.get("owner") or {}
    pid = owner.get("pid")
    if not isinstance(pid, int) or owner.get("host") != socket.gethostname():
        return False
    if owner.get("boot_id") and owner["boot_id"] != _boot_id():
        return False  # the machine rebooted since
    if owner.get("started") is not None and owner["started"] != _process_start(pid):
        return False  # that pid now belongs to another process (or none)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_session_folder(path: Path) -> bool:
    """A visible folder whose name parses as a session id."""
    return (
        path.is_dir()
        and not path.name.startswith(".")
        and layout.parse_session_id(path.name) is not None
    )


#: Folder levels searched below a root: a run-naming template puts sessions in
#: ``sub-<p>/ses-<s>/`` (LabRecorder's BIDS layout) or ``exp<n>/`` folders.
SESSION_DEPTH = 5
#: Most session folders one root yields (bounds a scan of a huge tree).
MAX_SESSIONS = 100_000


def session_folders(root: Path | str, depth: int = SESSION_DEPTH) -> list[Path]:
    """Every session folder under ``root``, oldest first.

    Sessions directly under ``root`` and in template folders up to ``depth``
    levels below it (``sub-P01/ses-S01/<session>``). Hidden folders, symbolic
    links, session folders' insides and BIDS datasets (a folder holding
    ``dataset_description.json``, whose ``sourcedata/`` keeps session copies)
    are not searched.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[Path] = []
    level = [root]
    for _ in range(max(1, depth)):
        deeper: list[Path] = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(
                    follow_symlinks=False
                ):
                    continue
                path = Path(entry.path)
                if layout.parse_session_id(entry.name) is not None:
                    found.append(path)
                elif not (path / "dataset_description.json").exists():
                    deeper.append(path)
        if len(found) >= MAX_SESSIONS:
            break
        level = deeper
    return sorted(found[:MAX_SESSIONS], key=_age_key)


def _age_key(path: Path) -> tuple[str, str]:
    parsed = layout.parse_session_id(path.name)
    return (parsed[1] if parsed else "", str(path))


def effective_status(meta: dict[str, Any]) -> str:
    """The stored status, or ``interrupted`` when a crash left it unfinished."""
    status = str(meta.get("status"))
    if status not in UNFINISHED or owner_alive(meta):
        return status
    if status == "active" and not meta.get("owner"):
        return status  # released normally by its owner; nothing was running
    return "interrupted"


def summarize_session(folder: Path | str) -> dict[str, Any]:
    """Summarise one session folder for `list` and `info`.

    Raises
    ------
    SessionNotFoundError
        If ``folder`` is missing or is not a session folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SessionNotFoundError(f"{folder}: no such folder")
    paths = SessionPaths(folder)
    try:
        meta = read_metadata(folder)
    except MetadataError as exc:
        if layout.parse_session_id(folder.name) is None:
            raise SessionNotFoundError(f"{folder}: not a session folder") from None
        return {
            "session_id": folder.name,
            "path": str(folder.resolve()),
            "status": "interrupted",
            "problems": [str(exc)],
        }
    files = meta.get("files", {})
    problems = []
    for device_id, entries in files.items():
        for entry in entries:
            try:
                target = paths.resolve(entry.get("file_path", ""))
            except Exception:
                problems.append(
                    f"{device_id}: bad file path {clip_repr(entry.get('file_path'))}"
                )
                continue
            if not target.is_file():
                problems.append(f"{device_id}: missing file {entry.get('file_path')}")
            elif entry.get("file_size") not in (None, target.stat().st_size):
                problems.append(f"{device_id}: changed file {entry.get('file_path')}")
    recording = meta.get("recording") or {}
    xdf = [f for f in recording.get("xdf_files", []) if (folder / f).exists()]
    return {
        "session_id": meta.get("session_id", folder.name),
        "name": meta.get("name"),
        "path": str(folder.resolve()),
        "status": effective_status(meta),
        "start_time": meta.get("start_time"),
        "end_time": meta.get("end_time"),
        "duration_s": meta.get("duration_s"),
        "devices": sorted(meta.get("devices", {})),
        "n_files": sum(len(v) for v in files.values()),
        "xdf_files": xdf,
        "streams": [
            {
                "name": s.get("name"),
                "type": s.get("type"),
                "sample_count": s.get("sample_count"),
            }
            for s in recording.get("streams", [])
        ],
        "processing": [
            r.get("name") for r in meta.get("processing", {}).get("runs", [])
        ],
        "problems": problems,
    }


def list_sessions(root: Path | str) -> list[dict[str, Any]]:
    """Summaries of every session under ``root``."""
    return [summarize_session(p) for p in session_folders(root)]


def find_unfinished(root: Path | str) -> list[Path]:
    """Sessions a crash left active/recording/processing (or without metadata)."""
    unfinished = []
    for folder in session_folders(root):
        try:
            meta = read_metadata(folder)
        except MetadataError:
            unfinished.append(folder)
            continue
        if effective_status(meta) == "interrupted":
            unfinished.append(folder)
    return unfinished
