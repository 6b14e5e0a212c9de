"""``lsl-session agent``: run one host's devices for the recorder host.

The agent dials the recorder host (``[agents] recorder``, port ``[agents] port``)
and proves the lab's token. When told ``start`` it starts the devices the config
gives its host, into a local staging session under ``ROOT/<session_id>/``, and
their streams go out on LSL like any device's. Twice a second it reports their
state; it logs started/stopped/failed as events. When told ``stop`` it stops them
and delivers every file they registered (`send.deliver`). A lost connection is
redialled with a growing pause (at most 2 s) while the devices keep streaming; a
new agent process rejoins the same way and is sent the current command.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsl_session.agents.remote import AGENT_KINDS
from lsl_session.agents.send import Offer, Target, connect, deliver
from lsl_session.agents.wire import Channel, WireError
from lsl_session.config import SessionConfig
from lsl_session.errors import ConfigError, LslSessionError
from lsl_session.fsutil import atomic_write_bytes
from lsl_session.lab.devices import DeviceRunner, SyncClock
from lsl_session.metadata import read_metadata
from lsl_session.session import Session, create_session_folder, sha256_file
from lsl_session.signals import StopRequest

logger = logging.getLogger(__name__)

#: Events kept while the recorder host is unreachable (oldest dropped first).
MAX_PENDING_EVENTS = 256
#: Seconds between two status reports.
STATUS_EVERY = 0.5
#: Seconds the agent keeps retrying one session's deliveries.
DELIVERY_DEADLINE = 3600.0
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z")
DELIVERED = ".delivered.json"


class Agent:
    """One host's agent (see the module doc).

    Parameters
    ----------
    config : SessionConfig
        The lab config (the same file as on the recorder host).
    host : str
        This computer's name in the config.
    root : Path
        Local staging folder for the devices' files.
    say : callable
        One line of user output.
    recorder, port : str, int, optional
        Override ``[agents] recorder`` / ``port``.
    """

    def __init__(
        self,
        config: SessionConfig,
        host: str,
        root: Path,
        say: Callable[[str], None],
        *,
        recorder: str | None = None,
        port: int | None = None,
    ) -> None:
        self.mine = [d for d in config.devices if d.host == host]
        if not self.mine:
            raise ConfigError(
                f"{config.path}: no device has host = {host!r}"
                f" (hosts: {', '.join(config.hosts()) or 'none'})"
            )
        settings = config.agents
        address = recorder or settings.recorder
        if not address:
            raise ConfigError(
                f"{config.path}: agents.recorder: where is the recorder host?"
                " (or give --recorder)"
            )
        rate = settings.max_rate_mb_s
        self.target = Target(
            address=address,
            port=port or settings.port,
            token=settings.token or "",
            host=host,
            instance=uuid.uuid4().hex[:16],
            stall_timeout=settings.stall_timeout_s,
            max_rate=None if rate is None else rate * 1e6,
        )
        self.config = config
        self.host, self.root, self.say = host, Path(root), say
        self.heartbeat = settings.heartbeat_timeout_s
        self.devices: list[DeviceRunner] = []
        self.session_id: str | None = None
        self.local: Session | None = None
        self.delivering: set[str] = set()
        self.done_sessions: list[str] = []
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING_EVENTS)
        self._chan: Channel | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()

    # ------------------------------------------------------------------ run
    def run(self, stopper: StopRequest, *, once: bool = False) -> None:
        """Serve until ``stopper`` (or, with ``once``, one session delivered)."""
        self._stop = stopper.event
        threading.Thread(target=self._report, name="agent-status", daemon=True).start()
        pause, last_error = 0.2, ""
        t = self.target
        self.say(
            f"agent {self.host}: {len(self.mine)} device(s); recorder {t.address}:{t.port}"
        )
        try:
            while not stopper.is_set() and not (once and self.done_sessions):
                try:
                    chan = connect(self.target, "control")
                except (OSError, WireError) as exc:
                    if str(exc) != last_error:
                        self.say(f"recorder host not reachable ({exc}); retrying")
                        last_error = str(exc)
                    stopper.wait(pause)
                    pause = min(pause * 2, 2.0)
                    continue
                pause, last_error = 0.2, ""
                chan.sock.settimeout(self.heartbeat)
                self.say("connected to the recorder host")
                self._serve(chan, stopper, once)
        finally:
            self._stop_devices()

    def _serve(self, chan: Channel, stopper: StopRequest, once: bool) -> None:
        with self._send_lock:
            self._chan = chan
            while self._events:
                if not self._send_now(self._events[0]):
                    break
                self._events.popleft()
        try:
            while not stopper.is_set() and not (once and self.done_sessions):
                self._on_command(chan.receive())
        except WireError as exc:
            if not stopper.is_set():
                self.say(f"recorder host lost ({exc}); devices keep streaming")
        finally:
            with self._send_lock:
                self._chan = None
            chan.close()

    def _on_command(self, msg: dict[str, Any]) -> None:
        kind, session_id = msg["type"], msg.get("session_id")
        if kind not in ("start", "stop"):
            return
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise WireError("bad session id from the recorder host")
        if kind == "start" and session_id != self.session_id:
            self._start(session_id, msg)
        elif kind == "stop":
            if session_id == self.session_id:
                self._stop_devices()
            if session_id not in self.delivering:
                self.delivering.add(session_id)
                threading.Thread(
                    target=self._deliver, args=(session_id,), daemon=True
                ).start()

    # -------------------------------------------------------------- devices
    def _start(self, session_id: str, msg: dict[str, Any]) -> None:
        self._stop_devices()
        staging = self.root / session_id
        restart = staging.is_dir() and any(staging.iterdir())
        folder = create_session_folder(staging, name=self.host)
        self.local = Session(folder)
        self.session_id = session_id
        self.say(f"session {session_id}: starting {len(self.mine)} device(s)")
        period = _number(msg.get("sync_every_s"), 4.0)
        clock = SyncClock(
            period=period, consumer_wait=_number(msg.get("consumer_wait"), 40.0)
        )
        rig = _rig(msg.get("rig"))  # the recorder host's: the same source_ids
        for d in self.mine:
            self.local.add_device(d.device_id, d.device_type, list(d.capabilities))
            runner = (
                AGENT_KINDS[d.device_type](d, rig)
                if d.device_type in AGENT_KINDS
                else None
            )
            if runner is None:
                continue
            self.devices.append(runner)
            try:
                runner.start(folder, clock)
            except LslSessionError as exc:
                runner.error = str(exc)
                self.say(f"could not start: {exc}")
                self._event("device_failed", d.device_id, message=str(exc))
                continue
            self._event("device_started", d.device_id, restart=restart)

    def _stop_devices(self) -> None:
        devices, self.devices = self.devices, []
        for dev in devices:
            if dev.error:
                continue
            dev.stop()
            self._event("device_stopped", dev.device_id)
        if self.local is not None:
            self.local.close()
            self.local = None

    # ------------------------------------------------------------ reporting
    def _report(self) -> None:
        while not self._stop.wait(STATUS_EVERY):
            devices = {
                dev.device_id: {
                    "streaming": dev.streaming(),
                    "connections": dev.connections(),
                    "error": dev.error,
                    "detail": dev.detail(),
                    "source_ids": dev.source_ids(),
                }
                for dev in list(self.devices)
            }
            with self._send_lock:
                if self._chan is not None:
                    self._send_now({"type": "status", "session_id": self.session_id,
                                    "devices": devices})  # fmt: skip

    def _event(self, event: str, device_id: str, **details: Any) -> None:
        msg = {"type": "event", "event": event, "device_id": device_id, **details}
        with self._send_lock:
            if self._chan is None or not self._send_now(msg):
                self._events.append(msg)

    def _send_now(self, msg: dict[str, Any]) -> bool:
        chan = self._chan
        if chan is None:
            return False
        try:
            chan.send(msg)
            return True
        except WireError:
            chan.close()  # the receive loop notices and redials
            return False

    # ------------------------------------------------------------- delivery
    def offers(self, session_id: str) -> list[Offer]:
        """Every file the devices registered in the staging sessions of ``session_id``."""
        out: list[Offer] = []
        staging = self.root / session_id
        if not staging.is_dir():
            return out
        for folder in sorted(p for p in staging.iterdir() if p.is_dir()):
            try:
                meta = read_metadata(folder)
            except LslSessionError:
                continue
            for device_id, files in (meta.get("files") or {}).items():
                for f in files:
                    rel = f.get("file_path", "")
                    if rel.startswith(("webcam/", "devices/")):
                        local = folder / rel
                        out.append(Offer(str(local), rel, device_id, f["file_type"],
                                         local.stat().st_size, f["sha256"]))  # fmt: skip
        return out

    def _deliver(self, session_id: str) -> None:
        marker = self.root / session_id / DELIVERED
        failed: list[str] = []
        sent = 0
        if not marker.exists():
            deadline = time.monotonic() + DELIVERY_DEADLINE
            for offer in self.offers(session_id):
                if sha256_file(offer.local) != offer.sha256:
                    self.say(f"{offer.path}: changed since it was recorded; not sent")
                    failed.append(offer.path)
                    continue
                result = deliver(
                    self.target, session_id, offer, deadline=deadline, stop=self._stop
                )
                if result.ok:
                    sent += 1
                    self.say(f"delivered {offer.path} ({result.sent} bytes sent, "
                             f"{result.attempts} attempt(s))")  # fmt: skip
                else:
                    failed.append(offer.path)
                    self.say(f"{offer.path}: not delivered ({result.reason})")
            if not failed:
                atomic_write_bytes(marker, json.dumps({"files": sent}).encode())
        msg = {"type": "delivered", "session_id": session_id, "failed": failed}
        while not self._stop.is_set():
            with self._send_lock:
                if self._send_now(msg):
                    break
            self._stop.wait(0.2)
        self.delivering.discard(session_id)
        self.done_sessions.append(session_id)


def _number(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(min(value, 86400.0))
    return default


def _rig(value: Any) -> str | None:
    """The rig the recorder host sent (None if missing or not a valid rig)."""
    from lsl_session.rig import RIG_PATTERN

    return value if isinstance(value, str) and RIG_PATTERN.match(value) else None
