"""The recorder host's side: agents connect, are told what to do, deliver files.

`AgentHub` listens on ``[agents] listen:port``. Each agent holds one ``control``
connection: the hub sends ``start`` (the session id, the recording's settings)
and, once the recorder stopped, ``stop``; the agent sends ``status`` twice a
second, ``event`` lines (device started/stopped/failed) and ``delivered`` when its
files are in. Files come over ``transfer`` connections (`receive`). An agent
silent for ``heartbeat_timeout_s`` is logged as ``agent_disconnected``; when it
comes back (the same process, or a new one after a restart) it is sent the
current command again and rejoins.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsl_session.agents.receive import PartLocks, parse_put, receive_file
from lsl_session.agents.wire import Channel, WireError, hub_handshake
from lsl_session.config import SessionConfig
from lsl_session.errors import DeviceError, LslSessionError
from lsl_session.limits import clip

logger = logging.getLogger(__name__)

#: Agent connections handled at once (the rest wait in the listen backlog).
MAX_CONNECTIONS = 64
#: Events one agent may log per session; past it one error event says so.
MAX_EVENTS = 1000
#: Device kinds an agent may report events for.
AGENT_EVENTS = {"device_started", "device_stopped", "device_failed"}


@dataclass
class DeviceReport:
    """What an agent last said about one of its devices."""

    streaming: bool = False
    connections: int = 0
    error: str | None = None
    detail: str = ""
    source_ids: list[str] = field(default_factory=list)


@dataclass
class AgentLink:
    """One host's agent as the hub sees it."""

    host: str
    device_ids: set[str]
    webcams: bool
    connected: bool = False
    address: str = ""
    instance: str | None = None
    chan: Channel | None = None
    devices: dict[str, DeviceReport] = field(default_factory=dict)
    delivered: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: dict[str, Any]) -> bool:
        chan = self.chan
        if chan is None:
            return False
        with self.send_lock:
            try:
                chan.send(message)
                return True
            except WireError:
                return False


class AgentHub:
    """Accept the lab's agents and keep their state (see the module doc).

    Parameters
    ----------
    config : SessionConfig
        The lab config (hosts, devices, ``[agents]``).
    say : callable
        One line of user output.
    """

    def __init__(self, config: SessionConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.settings = config.agents
        self.say = say
        self.links: dict[str, AgentLink] = {}
        for host in config.hosts():
            mine = [d for d in config.devices if d.host == host]
            ids = {d.device_id for d in mine}
            webcams = [d for d in mine if d.device_type == "pc_webcam"]
            # a webcam registers its video under webcam_<index>
            ids |= {f"webcam_{int(d.options.get('index') or 1)}" for d in webcams}
            self.links[host] = AgentLink(host, ids, bool(webcams))
        self.session: Any = None
        self.command: dict[str, Any] | None = None
        self.locks = PartLocks()
        self._sock: socket.socket | None = None
        self._closing = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._lock = threading.Lock()

    # ------------------------------------------------------------- lifecycle
    def start(self, session: Any) -> AgentHub:
        """Listen for agents; files and events go into ``session``."""
        self.session = session
        try:
            sock = socket.create_server(
                (self.settings.listen, self.settings.port), reuse_port=False
            )
        except OSError as exc:
            raise DeviceError(
                f"agents: cannot listen on {self.settings.listen}:"
                f"{self.settings.port}: {exc}"
            ) from None
        self._sock = sock
        threading.Thread(target=self._accept, name="agent-hub", daemon=True).start()
        self.say(
            f"agents: waiting for {', '.join(self.links)} on "
            f"{self.settings.listen}:{self.address[1]}"
        )
        return self

    @property
    def address(self) -> tuple[str, int]:
        assert self._sock is not None
        return self._sock.getsockname()[:2]

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._closing.set()
        if self._sock is not None:
            self._sock.close()
        for link in self.links.values():
            if link.chan is not None:
                link.chan.close()

    # ------------------------------------------------------------- commands
    def begin(self, message: dict[str, Any]) -> None:
        """Tell every agent (now and whenever one joins) to start its devices."""
        self.command = {"type": "start", **message}
        for link in self.links.values():
            link.send(self.command)

    def stop_agents(self) -> None:
        """Tell every agent to stop its devices and deliver their files."""
        assert self.command is not None
        self.command = {**self.command, "type": "stop"}
        for link in self.links.values():
            link.send(self.command)

    def collect(
        self, timeout: float, stop: threading.Event | None = None
    ) -> dict[str, list[str]]:
        """Wait until every agent delivered; return what is missing per host."""
        session_id = (self.command or {}).get("session_id")
        deadline = time.monotonic() + timeout
        while True:
            missing = {
                h: ["files"]
                for h, k in self.links.items()
                if session_id not in k.delivered
            }
            failed = {
                h: ["files"]
                for h, k in self.links.items()
                if k.delivered.get(session_id, {}).get("failed")
            }
            if not missing or time.monotonic() >= deadline or (stop and stop.is_set()):
                break
            time.sleep(0.1)
        for host in {**missing, **failed}:
            link = self.links[host]
            report = link.delivered.get(session_id)
            message = (
                f"agent {host}: files not delivered within {timeout:g} s"
                if report is None
                else f"agent {host}: {len(report['failed'])} file(s) not delivered:"
                f" {clip(', '.join(report['failed']))}"
            )
            self.say(message)
            self.session.log_event("error", {"category": "file", "message": message})
        return {**missing, **failed}

    # ---------------------------------------------------------- connections
    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, addr = self._sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(
                target=self._serve, args=(conn, addr[0]), daemon=True
            ).start()

    def _serve(self, conn: socket.socket, address: str) -> None:
        conn.settimeout(self.settings.heartbeat_timeout_s)
        chan = Channel(conn)
        try:
            host, role, instance = hub_handshake(
                chan, self.settings.token or "", set(self.links)
            )
            link = self.links[host]
            if role == "control":
                self._control(link, chan, address, instance)
            else:
                conn.settimeout(self.settings.stall_timeout_s)
                self._transfers(link, chan)
        except WireError as exc:
            logger.info("agent connection from %s ended: %s", address, exc)
        except LslSessionError as exc:
            logger.warning("agent connection from %s: %s", address, exc)
        finally:
            chan.close()
            self._slots.release()

    def _control(self, link: AgentLink, chan: Channel, address: str, instance: str):
        with self._lock:
            old, link.chan = link.chan, chan
            restart = link.instance is not None and link.instance != instance
            link.instance, link.address, link.connected = instance, address, True
        if old is not None:
            old.close()  # the newer connection wins
        self._log(
            "agent_connected",
            {"host": link.host, "address": address, "instance": instance,
             "restart": restart},
        )  # fmt: skip
        self.say(
            f"agent {link.host} connected from {address}"
            + (" (restarted)" if restart else "")
        )
        if self.command is not None:
            link.send(self.command)
        reason = "closed"
        try:
            while not self._closing.is_set():
                self._on_message(link, chan.receive())
        except WireError as exc:
            reason = str(exc)
        finally:
            with self._lock:
                current = link.chan is chan
                if current:
                    link.chan, link.connected = None, False
            if current and not self._closing.is_set():
                self._log("agent_disconnected", {"host": link.host, "reason": reason})
                self.say(f"agent {link.host} disconnected ({reason})")

    def _on_message(self, link: AgentLink, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "status":
            link.send({"type": "ack"})  # the agent's heartbeat of the hub
            devices = msg.get("devices")
            if not isinstance(devices, dict):
                return
            for device_id, raw in list(devices.items())[:64]:
                if device_id in link.device_ids and isinstance(raw, dict):
                    link.devices[device_id] = _report(raw)
        elif kind == "event":
            self._on_event(link, msg)
        elif kind == "delivered":
            session_id = msg.get("session_id")
            failed = msg.get("failed")
            if session_id == (self.command or {}).get("session_id"):
                failed = (
                    [clip(f, 100) for f in failed[:20]]
                    if isinstance(failed, list)
                    else []
                )
                link.delivered[session_id] = {"failed": failed}

    def _on_event(self, link: AgentLink, msg: dict[str, Any]) -> None:
        event, device_id = msg.get("event"), msg.get("device_id")
        if event not in AGENT_EVENTS or device_id not in link.device_ids:
            return
        link.events += 1
        if link.events > MAX_EVENTS:
            if link.events == MAX_EVENTS + 1:
                self._log("error", {"category": "device", "message":
                          f"agent {link.host}: more than {MAX_EVENTS} events; the rest dropped"})  # fmt: skip
            return
        details: dict[str, Any] = {"device_id": device_id, "host": link.host}
        if msg.get("restart"):
            details["restart"] = True
        message = msg.get("message")
        if event == "device_failed":
            details["category"] = "device"
            details["message"] = clip(
                message if isinstance(message, str) else "failed", 500
            )
            self.say(f"{device_id} on {link.host}: {details['message']}")
            self._log("error", details)
        else:
            self._log(event, details)

    def _transfers(self, link: AgentLink, chan: Channel) -> None:
        cap = int(self.settings.max_file_gb * 1e9)
        while not self._closing.is_set():
            msg = chan.receive()
            if msg["type"] != "put":
                raise WireError(f"unexpected {msg['type'][:20]!r} on a transfer")
            if self.command is None or msg.get("session_id") != self.command.get(
                "session_id"
            ):
                chan.send({"type": "error", "reason": "not this session's file"})
                continue
            try:
                put = parse_put(msg, link.device_ids, link.webcams, cap)
                receive_file(chan, self.session, put, link.host, self.locks)
            except LslSessionError as exc:
                chan.send({"type": "error", "reason": clip(str(exc))})
                logger.warning("agent %s: %s", link.host, exc)

    def _log(self, event: str, details: dict[str, Any]) -> None:
        try:
            self.session.log_event(event, details)
        except LslSessionError:
            logger.exception("logging %s failed", event)


def _report(raw: dict[str, Any]) -> DeviceReport:
    error = raw.get("error")
    ids = raw.get("source_ids")
    conns = raw.get("connections")
    return DeviceReport(
        streaming=raw.get("streaming") is True,
        connections=conns
        if isinstance(conns, int) and not isinstance(conns, bool)
        else 0,
        error=clip(error, 300) if isinstance(error, str) else None,
        detail=clip(raw.get("detail") or "", 60),
        source_ids=[clip(s, 200) for s in ids[:16] if isinstance(s, str)]
        if isinstance(ids, list)
        else [],
    )
