"""SessionFollower: a relay started with ``--session DIR`` follows that session.

A recorder in another process (``lsl-session record --session DIR``) sets the
session's status to ``recording`` when it starts and back when it stops; the
follower polls ``session_metadata.json`` and sends ``start_record`` (with the
session id) / ``stop_record`` to every phone within one poll period, and
``start_record`` to a phone that connects while the session records.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsl_session.errors import LslSessionError
from lsl_session.layout import SessionPaths
from lsl_session.metadata import read_metadata

if TYPE_CHECKING:
    from outlets.phone.relay import PhoneRelay

logger = logging.getLogger(__name__)

#: Seconds between two looks at the session's status.
POLL_S = 0.2


class SessionFollower:
    """Send record commands to the relay's phones as the session's status changes.

    Parameters
    ----------
    relay : PhoneRelay
        A started relay.
    session_dir : Path | str
        The session folder the relay stores uploads in.
    poll : float
        Seconds between status checks (the command latency is at most this plus
        the command's round trip).
    """

    def __init__(
        self, relay: PhoneRelay, session_dir: Path | str, *, poll: float = POLL_S
    ) -> None:
        self.relay = relay
        self.paths = SessionPaths(Path(session_dir))
        self.poll = float(poll)
        self.recording = False
        self.commands: list[
            tuple[str, dict[str, Any]]
        ] = []  # (command, acks), last 100
        self._joined: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stamp: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SessionFollower:
        """Start following in a daemon thread; returns self."""
        self.relay.add_observer(self._on_relay_event)
        self._thread = threading.Thread(
            target=self._run, name="session-follower", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following (no command is sent); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    # -------------------------------------------------------------- internals
    def _on_relay_event(self, entry: dict[str, Any]) -> None:
        # runs on the relay's event loop: only note it, the thread sends
        if entry.get("event") == "device_connected":
            with self._lock:
                self._joined.append(str(entry.get("device_id")))

    def _status(self) -> str | None:
        """The session's status, or None when the file did not change."""
        try:
            st = os.stat(self.paths.metadata)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp == self._stamp:
            return None
        try:
            meta = read_metadata(self.paths.root)
        except LslSessionError as exc:
            logger.warning("cannot read the session status: %s", exc)
            return None
        self._stamp = stamp
        return str(meta.get("status"))

    def _send(self, command: str, device_ids: list[str] | None = None) -> None:
        sid = self.paths.session_id
        if command == "start_record":
            acks = self.relay.start_record(device_ids, session_id=sid)
        else:
            acks = self.relay.stop_record(device_ids)
        logger.info("session %s: %s → %s", sid, command, acks)
        self.commands.append((command, acks))
        del self.commands[:-100]

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self._step()
            except Exception:  # a relay that stops under us, a bug: keep following
                logger.exception("session follower step failed")

    def _step(self) -> None:
        status = self._status()
        if status is not None:
            recording = status == "recording"
            if recording != self.recording:
                self.recording = recording
                self._send("start_record" if recording else "stop_record")
        with self._lock:
            joined, self._joined = self._joined, []
        if joined and self.recording:
            self._send("start_record", sorted(set(joined)))
