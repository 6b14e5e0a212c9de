"""session_metadata.json: schema defaults, atomic writes and locked updates (SPEC §3)."""

from __future__ import annotations

import json
import logging
import platform
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lsl_session import __version__
from lsl_session.errors import MetadataError
from lsl_session.fsutil import atomic_write_bytes, locked
from lsl_session.layout import METADATA_FILE, SessionPaths
from lsl_session.limits import clip

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def now_iso() -> str:
    """Current wall-clock time, ISO-8601 with microseconds and the local timezone."""
    return datetime.now().astimezone().isoformat(timespec="microseconds")


def liblsl_version() -> str | None:
    """Return liblsl's version string, or None when pylsl cannot load it."""
    try:
        import pylsl

        return str(pylsl.library_info())
    except Exception:  # pragma: no cover - depends on the installation
        return None


def software_info() -> dict[str, Any]:
    """Describe the software and host that wrote a session."""
    return {
        "package": "lsl-session",
        "version": __version__,
        "liblsl": liblsl_version(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }


def new_metadata(session_id: str, name: str | None, created: str) -> dict[str, Any]:
    """Return the metadata of a freshly created session."""
    return {
        "schema_version": SCHEMA_VERSION,
        "session_id": session_id,
        "name": name,
        "start_time": created,
        "end_time": None,
        "duration_s": None,
        "status": "active",
        "devices": {},
        "files": {},
        "recording": {"xdf_files": [], "streams": [], "runs": []},
        "processing": {"runs": []},
        "software": software_info(),
    }


def read_metadata(session_dir: Path | str) -> dict[str, Any]:
    """Read and validate ``session_metadata.json``.

    Raises
    ------
    MetadataError
        If the file is missing, not JSON, or not a metadata object.
    """
    path = Path(session_dir) / METADATA_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise MetadataError(f"{path}: no session metadata") from None
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{path}: unreadable metadata ({clip(exc)})") from None
    except RecursionError:
        raise MetadataError(
            f"{path}: unreadable metadata (nested too deeply)"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("session_id"), str):
        raise MetadataError(f"{path}: not a session metadata object")
    return data


def write_metadata(session_dir: Path | str, data: dict[str, Any]) -> None:
    """Write the metadata atomically (temp + fsync + ``os.replace`` + dir fsync)."""
    payload = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode()
    atomic_write_bytes(Path(session_dir) / METADATA_FILE, payload + b"\n")


def update_metadata(
    session_dir: Path | str, change: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    """Read, change and write the metadata under the session's inter-process lock.

    ``change`` mutates the dict in place. If it raises, nothing is written.

    Returns
    -------
    dict
        The metadata as written.
    """
    paths = SessionPaths(Path(session_dir))
    with locked(paths.lock):
        data = read_metadata(paths.root)
        change(data)
        write_metadata(paths.root, data)
    return data
