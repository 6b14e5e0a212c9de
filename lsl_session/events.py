"""The session event log (SPEC §4): an always-valid JSON array with O(1) appends.

The file looks like ``[\\n{...},\\n{...}\\n]\\n``: one event per line. An append
overwrites the closing ``]\\n`` with ``,\\n<event>\\n]\\n`` in a single ``pwrite``
at the end, so the cost of an append does not depend on the log's length. Appends
are serialised across threads and processes by the session lock and fsynced per
event by default.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from lsl_session.errors import LslSessionError
from lsl_session.fsutil import fsync_dir, locked, open_nofollow

logger = logging.getLogger(__name__)

EVENT_TYPES: frozenset[str] = frozenset(
    {
        "session_start",
        "session_end",
        "device_connected",
        "device_disconnected",
        "device_ack",
        "start_record",
        "stop_record",
        "file_received",
        "calibration_capture",
        "stimulus_play",
        "stimulus_stop",
        "marker",
        "error",
        # Lifecycle events added by this project (documented in docs/events.md).
        "processing_start",
        "processing_end",
        "recovered",
        "session_imported",
        "session_resume",
        # Agents on other computers (docs/multi-pc.md).
        "agent_connected",
        "agent_disconnected",
        "device_started",
        "device_stopped",
        # The recorder: a stream's data now comes from another outlet (#23).
        "stream_source_changed",
    }
)
ERROR_CATEGORIES: frozenset[str] = frozenset({"session", "device", "file", "system"})
_EMPTY = b"[\n]\n"
_TAIL = b"\n]\n"

Observer = Callable[[dict[str, Any]], None]


class EventLogFile:
    """Append-only JSON-array file; every method is safe across threads and processes.

    Parameters
    ----------
    path : Path
        The ``<session_id>_log.json`` file; created (empty array) if missing.
    lock_path : Path
        The session's lock file, shared with metadata updates.
    fsync : bool
        Fsync after every append (default). Turning it off trades durability of
        the last events for speed.
    """

    def __init__(self, path: Path, lock_path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.lock_path = Path(lock_path)
        self.fsync = fsync
        with locked(self.lock_path):
            if not self.path.exists():
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(fd, _EMPTY)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                fsync_dir(self.path.parent)

    def append(self, event: dict[str, Any]) -> None:
        """Append one event; the file is a valid JSON array before and after."""
        line = json.dumps(event, ensure_ascii=False, default=str).encode()
        if b"\n" in line:  # pragma: no cover - json.dumps never emits raw newlines
            raise LslSessionError("event serialised to more than one line")
        with locked(self.lock_path):
            fd = open_nofollow(self.path, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                if size == len(_EMPTY) and os.pread(fd, size, 0) == _EMPTY:
                    pos, chunk = 2, line + _TAIL
                elif size >= 3 and os.pread(fd, 3, size - 3) == _TAIL:
                    pos, chunk = size - 2, b",\n" + line + _TAIL
                else:
                    raise LslSessionError(
                        f"{self.path}: event log is torn; run `lsl-session recover`"
                    )
                try:
                    written = os.pwrite(fd, chunk, pos)
                    if written != len(chunk):
                        raise OSError(28, "short write (disk full?)")
                except OSError as exc:
                    self._restore_tail(fd, pos)
                    raise LslSessionError(
                        f"{self.path}: cannot append event: {exc.strerror or exc}"
                    ) from None
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def _restore_tail(self, fd: int, pos: int) -> None:
        """Undo a failed append: cut it off and put the closing bracket back."""
        try:
            os.ftruncate(fd, pos)
            os.pwrite(fd, b"]\n", pos)
        except OSError:
            logger.exception(
                "%s: could not restore the log after a failed append", self.path
            )

    def read(self) -> list[dict[str, Any]]:
        """Return all events (raises ``ValueError`` if the file is not valid JSON)."""
        return json.loads(self.path.read_bytes())


def make_event(
    event: str, session_id: str, details: dict[str, Any] | None, lsl_time: float
) -> dict[str, Any]:
    """Build an event entry with the §4 fields; details may not override them."""
    now = datetime.now().astimezone()
    entry: dict[str, Any] = {
        "event": event,
        "time": now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}",
        "timestamp": now.isoformat(timespec="microseconds"),
        "lsl_time": lsl_time,
        "session": session_id,
    }
    for key, value in (details or {}).items():
        entry.setdefault(str(key), value)
    return entry


def _lsl_clock() -> float:
    import pylsl

    return pylsl.local_clock()


class SessionLogger:
    """Log session events to the JSON log, to an LSL marker stream and to observers.

    Parameters
    ----------
    session_id : str
        The session the events belong to.
    log_file : EventLogFile
        Where events are persisted.
    lsl_outlet : bool
        Publish every event on the ``<session_id>_events`` marker stream (type
        ``Markers``, source_id ``lsl_session/<rig>/<session_id>/events``).
    rig : str | None
        The rig identity in the stream's source_id (see `lsl_session.rig`).

    Notes
    -----
    Observers are called after the event is durable, from the logging thread;
    an observer that raises is logged and never breaks logging. Observer kinds:
    ``"entry_added"``, ``"session_started"``, ``"session_ended"``, ``"error_logged"``
    (the seed's Qt signals).
    """

    def __init__(
        self,
        session_id: str,
        log_file: EventLogFile,
        *,
        lsl_outlet: bool = True,
        rig: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.rig = rig
        self.log_file = log_file
        self._observers: dict[str, list[Observer]] = {
            "entry_added": [],
            "session_started": [],
            "session_ended": [],
            "error_logged": [],
        }
        self._outlet = None
        self._outlet_lock = threading.Lock()
        if lsl_outlet:
            self._outlet = self._make_outlet()

    def _make_outlet(self):
        import pylsl

        info = pylsl.StreamInfo(
            f"{self.session_id}_events",
            "Markers",
            1,
            pylsl.IRREGULAR_RATE,
            pylsl.cf_string,
            self.stream_source_id,
        )
        desc = info.desc()
        ch = desc.append_child("channels").append_child("channel")
        ch.append_child_value("label", "event")
        ch.append_child_value("type", "Markers")
        ch.append_child_value("unit", "json")
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "lsl_session")
        acq.append_child_value("model", "session event log")
        return pylsl.StreamOutlet(info)

    @property
    def stream_source_id(self) -> str:
        """The source_id of the session's marker stream."""
        from lsl_session.rig import source_id

        return source_id(self.rig, self.session_id, "events")

    def subscribe(self, kind: str, callback: Observer) -> None:
        """Call ``callback(entry)`` for every future event of ``kind``."""
        if kind not in self._observers:
            raise LslSessionError(
                f"unknown observer kind {kind!r}; one of {sorted(self._observers)}"
            )
        self._observers[kind].append(callback)

    def unsubscribe(self, kind: str, callback: Observer) -> None:
        """Stop calling ``callback`` for ``kind``."""
        if callback in self._observers.get(kind, []):
            self._observers[kind].remove(callback)

    def log_event(
        self, event: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Persist an event, push it on the marker stream and notify observers.

        Parameters
        ----------
        event : str
            One of `EVENT_TYPES`.
        details : dict | None
            Extra JSON-serialisable fields. ``error`` events need a ``category``
            (session, device, file or system).

        Returns
        -------
        dict
            The entry as written.

        Raises
        ------
        LslSessionError
            For an unknown event type or error category; nothing is written.
        """
        if event not in EVENT_TYPES:
            raise LslSessionError(f"unknown event type {event!r}")
        if details is not None and not isinstance(details, dict):
            raise LslSessionError("event details must be a dict")
        if event == "error":
            category = (details or {}).get("category")
            if category not in ERROR_CATEGORIES:
                raise LslSessionError(
                    f"error events need a category in {sorted(ERROR_CATEGORIES)},"
                    f" got {category!r}"
                )
        entry = make_event(event, self.session_id, details, _lsl_clock())
        self.log_file.append(entry)
        outlet = self._outlet  # close() may clear it from another thread
        if outlet is not None:
            payload = json.dumps(entry, ensure_ascii=False, default=str)
            with self._outlet_lock:
                outlet.push_sample([payload], entry["lsl_time"])
        self._notify("entry_added", entry)
        kind = {
            "session_start": "session_started",
            "session_end": "session_ended",
            "error": "error_logged",
        }.get(event)
        if kind:
            self._notify(kind, entry)
        return entry

    def get_events(self) -> list[dict[str, Any]]:
        """Return every event logged in this session so far."""
        return self.log_file.read()

    def close(self) -> None:
        """Release the marker outlet; safe to call twice."""
        self._outlet = None

    def _notify(self, kind: str, entry: dict[str, Any]) -> None:
        for callback in list(self._observers[kind]):
            try:
                callback(entry)
            except Exception:
                logger.exception("observer %r failed for %s", callback, kind)
