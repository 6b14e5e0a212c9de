"""Repair a torn event log: keep every complete event, set the torn rest aside."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lsl_session.fsutil import atomic_write_bytes, locked

logger = logging.getLogger(__name__)

_EMPTY = b"[\n]\n"
_TAIL = b"\n]\n"


@dataclass(slots=True)
class LogRepair:
    """What :func:`repair_event_log` found and did.

    Attributes
    ----------
    path : Path
        The ``<session_id>_log.json`` file.
    events : list of dict
        Every complete event (in file order).
    repaired : bool
        The file was (or, in a dry run, would be) rewritten.
    created : bool
        The file was missing (a new empty log is created when events are logged).
    torn_bytes : int
        Bytes of incomplete event lines.
    torn_file : Path | None
        Where those bytes were saved.
    """

    path: Path
    events: list[dict[str, Any]]
    repaired: bool = False
    created: bool = False
    torn_bytes: int = 0
    torn_file: Path | None = None

    def actions(self) -> list[str]:
        """Human-readable lines describing the repair."""
        if self.created:
            return [f"{self.path.name}: event log was missing; started a new one"]
        if not self.repaired:
            return []
        kept = f", kept in {self.torn_file.name}" if self.torn_file else ""
        torn = f"; {self.torn_bytes} torn bytes{kept}" if self.torn_bytes else ""
        return [
            f"{self.path.name}: rewrote the event log with {len(self.events)} "
            f"complete events{torn}"
        ]


def _is_valid(data: bytes) -> bool:
    """Valid JSON array that the O(1) appender can extend."""
    if data != _EMPTY and not data.endswith(_TAIL):
        return False
    try:
        events = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(events, list) and all(isinstance(e, dict) for e in events)


def _salvage(data: bytes) -> tuple[list[bytes], bytes]:
    """Split the log into complete event lines and the torn remainder."""
    good: list[bytes] = []
    torn: list[bytes] = []
    for raw in data.split(b"\n"):
        line = raw.strip().strip(b",").strip()
        if line in (b"", b"[", b"]"):
            continue
        if line.startswith(b"["):
            line = line[1:].strip()
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # torn, or nested too deeply to trust
            torn.append(raw)
            continue
        if isinstance(event, dict):
            good.append(json.dumps(event, ensure_ascii=False).encode())
        else:
            torn.append(raw)
    return good, b"\n".join(torn)


def salvage_events(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The complete events of a damaged log and the number of unreadable lines."""
    good, torn = _salvage(data)
    bad = len([ln for ln in torn.split(b"\n") if ln.strip()]) if torn else 0
    return [json.loads(x) for x in good], bad


def encode_log(lines: list[bytes]) -> bytes:
    """The on-disk form of a log holding ``lines`` (one JSON object per line)."""
    if not lines:
        return _EMPTY
    return b"[\n" + b"\n,\n".join(lines) + _TAIL


def repair_event_log(
    path: Path, lock_path: Path, *, dry_run: bool = False
) -> LogRepair:
    """Make the event log a valid JSON array again, losing no complete event.

    Parameters
    ----------
    path : Path
        The event log.
    lock_path : Path
        The session lock (held while reading and rewriting).
    dry_run : bool
        Only report.

    Returns
    -------
    LogRepair
        The complete events and what was done.

    Notes
    -----
    Incomplete lines (an append cut by a crash) are saved to
    ``<log>.torn-<YYYYmmddTHHMMSS>`` before the log is rewritten atomically in
    the appender's own format, so later appends stay O(1).
    """
    path = Path(path)
    if not path.exists():
        return LogRepair(path, [], created=True)
    with locked(lock_path):
        data = path.read_bytes()
        if _is_valid(data):
            return LogRepair(path, json.loads(data))
        lines, torn = _salvage(data)
        report = LogRepair(
            path, [json.loads(x) for x in lines], repaired=True, torn_bytes=len(torn)
        )
        if dry_run:
            return report
        if torn:
            stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
            target = path.with_name(f"{path.name}.torn-{stamp}")
            atomic_write_bytes(target, torn)
            report.torn_file = target
        atomic_write_bytes(path, encode_log(lines))
    logger.info("repaired event log %s", path)
    return report
