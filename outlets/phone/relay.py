"""PhoneRelay: asyncio TCP server that turns phones into LSL outlets (SPEC §10).

The relay runs its own event loop in a daemon thread; the public methods are
thread-safe. Per phone it keeps a `ClockEstimator` (phone clock → LSL
``local_clock``) and a `PhoneOutlets` that survives disconnects for
``outlet_grace_s`` so a recorder continues the same streams after a reconnect.
Session writes (events, devices, files) run in a single worker thread, in order,
so the event loop never waits for an fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from lsl_session.control import is_loopback
from lsl_session.errors import DeviceError
from lsl_session.session import Session
from outlets.phone import protocol as P
from outlets.phone._connection import Connection
from outlets.phone.clock import SyncQuality
from outlets.phone.guard import AuthThrottle, host_key
from outlets.phone.limits import PREAUTH_TEXT, RelayLimits
from outlets.phone.listener import Listener, Slot
from outlets.phone.protocol import MAX_FRAME
from outlets.phone.relay_log import RelayLog
from outlets.phone.state import DeviceState
from outlets.phone.uploads import UploadStore

logger = logging.getLogger(__name__)

#: Sync schedule advertised to phones in ``welcome`` (see docs/phone-protocol.md).
#: Exchanges are spaced (62 ms; 20 ms in the initial burst), not bunched: on a TCP
#: link a burst queues behind itself, so most replies would carry the delay of
#: those before them.
SYNC_SCHEDULE = {
    "initial_burst": 48,
    "initial_spacing_ms": 20,
    "burst": 16,
    "interval_s": 1.0,
    "spacing_ms": 62,
}


class PhoneRelay:
    """Accept phones over TCP (optionally TLS) and publish their LSL streams.

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 picks a free port (see `port`). Anything but
        loopback needs ``tokens``.
    tokens : dict[str, str] | None
        Pairing tokens ``{device_id: token}``; None accepts any device (logged),
        on a loopback address only.
    session : Session | Path | str | None
        Session that uploads, devices and events go to; without one, uploads are
        refused.
    ssl_context : ssl.SSLContext | None
        Server-side TLS context.
    heartbeat_interval, heartbeat_timeout : float
        Seconds between relay heartbeats; silence after which a phone is declared
        disconnected (≤ 3 s by SPEC §10).
    outlet_grace_s : float
        How long a disconnected phone's outlets stay open for a reconnect.
    command_timeout : float
        Seconds to wait for a command acknowledgement.
    limits : RelayLimits | None
        Bounds on connections, buffers, logs and uploads (documented defaults).
    rig : str | None
        The rig identity put into every phone stream's source_id.

    Raises
    ------
    ValueError
        For a heartbeat timeout above 3 s, or a non-loopback ``host`` without
        tokens.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tokens: dict[str, str] | None = None,
        session: Session | Path | str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 2.5,
        hello_timeout: float = 5.0,
        outlet_grace_s: float = 600.0,
        command_timeout: float = 5.0,
        max_frame: int = MAX_FRAME,
        max_errors: int = 20,
        limits: RelayLimits | None = None,
        rig: str | None = None,
    ) -> None:
        #: The rig identity in the phones' source_ids (``lsl_session/<rig>/…``).
        self.rig = rig
        if not 0 < heartbeat_timeout <= 3.0:
            raise ValueError(
                f"heartbeat_timeout must be in (0, 3] s, got {heartbeat_timeout}"
            )
        if tokens is None and not is_loopback(host):
            raise ValueError(
                f"refusing to accept phones on non-loopback {host!r} without "
                "tokens: anyone on the network could claim a device id"
            )
        self.limits = limits or RelayLimits()
        self.host, self._port = host, int(port)
        self.tokens = (
            None if tokens is None else {str(k): str(v) for k, v in tokens.items()}
        )
        self.ssl_context = ssl_context
        self.heartbeat_interval = float(heartbeat_interval)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.hello_timeout = float(hello_timeout)
        self.outlet_grace_s = float(outlet_grace_s)
        self.command_timeout = float(command_timeout)
        self.max_frame = int(max_frame)
        self.max_errors = int(max_errors)
        self.sync_schedule = dict(SYNC_SCHEDULE)
        self.devices: dict[str, DeviceState] = {}
        self.events = RelayLog(self.limits)
        self.history = self.events.history
        self.push_observers: list[Callable[..., None]] = []
        self._owns_session = False
        self.session: Session | None = None
        self.uploads: UploadStore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: Listener | None = None
        self._connections: set[Connection] = set()
        self._slots: dict[Connection, Slot] = {}
        self._handlers: set[asyncio.Task] = set()
        lim = self.limits
        self._throttle_all = AuthThrottle(
            free=lim.auth_free_failures_total,
            window_s=lim.auth_window_s,
            delay=lim.auth_delay_s,
            max_delay=lim.auth_max_delay_s,
            max_keys=1,
        )
        self._throttle = AuthThrottle(
            free=lim.auth_free_failures,
            window_s=lim.auth_window_s,
            delay=lim.auth_delay_s,
            max_delay=lim.auth_max_delay_s,
            max_keys=lim.max_limiter_keys,
        )
        self._stopped = False
        self.set_session(session)
        if self.tokens is None:
            logger.warning("phone relay without tokens: any device id is accepted")

    def __enter__(self) -> PhoneRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        """The bound TCP port (after `start`)."""
        return self._port

    def start(self) -> PhoneRelay:
        """Start the event loop thread and listen; return once bound.

        Raises
        ------
        DeviceError
            If the address cannot be bound.
        """
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="phone-relay", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._call(self._listen(), timeout=10)
        except OSError as exc:
            self.stop()
            raise DeviceError(
                f"cannot listen on {self.host}:{self._port}: {exc}"
            ) from None
        logger.info(
            "phone relay listening on %s:%d%s",
            self.host,
            self._port,
            " (TLS)" if self.ssl_context else "",
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and outlet and stop the loop; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        loop = self._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(Exception):
                self._call(self._shutdown(), timeout=timeout)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        for dev in self.devices.values():
            if dev.outlets is not None:
                dev.outlets.close()
                dev.outlets = None
            if dev.clock is not None:
                dev.clock.close()
                dev.clock = None
        self.events.close()
        if self._owns_session and self.session is not None:
            self.session.close()

    def set_session(self, session: Session | Path | str | None) -> None:
        """Attach (or detach with None) the session that uploads and events go to."""
        if session is not None and not isinstance(session, Session):
            session = Session.open(session)
            self._owns_session = True
        self.session = self.events.session = session
        lim = self.limits
        self.uploads = (
            None
            if session is None
            else UploadStore(
                session,
                max_per_device=lim.max_uploads_per_device,
                max_parts=lim.max_parts_per_device,
                part_max_age_s=lim.part_max_age_s,
            )
        )

    # ---------------------------------------------------------------- status
    def add_observer(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(entry)`` (relay thread) for every relay event."""
        self.events.observers.append(callback)

    def connected(self) -> list[str]:
        """Device ids with a live connection."""
        return sorted(d for d, s in self.devices.items() if s.conn is not None)

    def sync_quality(self, device_id: str) -> SyncQuality | None:
        """Current clock-fit quality of a phone, or None."""
        dev = self.devices.get(device_id)
        return None if dev is None or dev.estimator is None else dev.estimator.quality()

    def source_ids(self, device_id: str) -> dict[str, str]:
        """Stream key → source id of a phone's outlets (empty before sync)."""
        dev = self.devices.get(device_id)
        return {} if dev is None or dev.outlets is None else dev.outlets.source_ids()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per device: connection, last heartbeat status, counts and sync quality."""
        out = {}
        for device_id, dev in list(self.devices.items()):
            q = self.sync_quality(device_id)
            out[device_id] = {
                "connected": dev.conn is not None,
                "address": dev.address,
                "phone_status": dict(dev.phone_status),
                "samples": dict(dev.outlets.counts) if dev.outlets else {},
                "source_ids": self.source_ids(device_id),
                "sync": q.as_dict() if q else None,
                "recording": dev.recording,
            }
        return out

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every session write queued so far (events, files) is done."""
        self.events.flush(timeout)

    def connection_count(self) -> int:
        """Open connections, TLS handshakes in progress included (≤ max_connections)."""
        listener = self._listener
        return 0 if listener is None else len(listener.slots)

    def held_bytes(self) -> dict[str, int]:
        """Bytes each open connection holds (received, unsynced, unsent data).

        Keys are peer addresses; this is what the per-connection memory bounds
        in docs/phone-protocol.md are about.
        """

        async def collect() -> dict[str, int]:
            return {c.address: c.held_bytes() for c in list(self._connections)}

        return self._call(collect(), timeout=5)

    def wait_ready(self, device_id: str, timeout: float = 10.0) -> bool:
        """Block until a phone is connected and its clock fit is ready."""
        deadline = pylsl.local_clock() + timeout
        while pylsl.local_clock() < deadline:
            dev = self.devices.get(device_id)
            conn = dev.conn if dev else None
            if conn is not None and conn.est.ready and dev.outlets is not None:
                return True
            threading.Event().wait(0.02)
        return False

    # -------------------------------------------------------------- commands
    def start_record(
        self,
        device_ids: list[str] | None = None,
        *,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Send ``start_record`` (with the session id) and return the acks."""
        sid = session_id or (self.session.session_id if self.session else None)
        return self._command_all(
            "start_record", {"session_id": sid}, device_ids, timeout
        )

    def stop_record(
        self, device_ids: list[str] | None = None, *, timeout: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """Send ``stop_record``; phones then upload their files. Return the acks."""
        sid = self.session.session_id if self.session else None
        return self._command_all(
            "stop_record", {"session_id": sid}, device_ids, timeout
        )

    def sync_flash(
        self,
        device_ids: list[str] | None = None,
        *,
        duration_ms: int = 200,
        timeout: float | None = None,
        pulse: int | None = None,
        at: float | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Ask phones to flash (screen/torch) and mark it; return the acks.

        ``pulse`` is the lab's id of this sync pulse (the phone echoes it in its
        ``sync_flash`` event, pushed as ``sync_flash <pulse>``); ``at`` is the
        LSL time to flash at, sent to each phone as its own clock's time through
        its live mapping (docs/phone-protocol.md §11).
        """
        return self._command_all(
            "sync_flash", _flash_fields(duration_ms, pulse, at), device_ids, timeout
        )

    def send_sync_pulse(self, pulse: int, at: float, *, duration_ms: int = 200) -> Any:
        """`sync_flash` pulse ``pulse`` at LSL time ``at`` to every phone; no wait.

        Returns the `concurrent.futures.Future` of the acks (the lab's pulse
        schedule never waits for a phone).
        """
        assert self._loop is not None
        fields = _flash_fields(duration_ms, pulse, at)
        timeout = self.command_timeout

        async def fan_out() -> dict[str, dict[str, Any]]:
            ids = self.connected()
            acks = await asyncio.gather(
                *(self._command(d, "sync_flash", fields, timeout) for d in ids)
            )
            return dict(zip(ids, acks, strict=True))

        return asyncio.run_coroutine_threadsafe(fan_out(), self._loop)

    def marker(
        self,
        label: str,
        device_ids: list[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Ask phones to insert ``label`` into their event stream; return the acks."""
        return self._command_all("marker", {"label": str(label)}, device_ids, timeout)

    def _command_all(
        self,
        command: str,
        fields: dict[str, Any],
        device_ids: list[str] | None,
        timeout: float | None,
    ) -> dict[str, dict[str, Any]]:
        timeout = self.command_timeout if timeout is None else float(timeout)
        ids = self.connected() if device_ids is None else list(device_ids)

        async def fan_out() -> dict[str, dict[str, Any]]:
            results = await asyncio.gather(
                *(self._command(d, command, fields, timeout) for d in ids)
            )
            return dict(zip(ids, results, strict=True))

        return self._call(fan_out(), timeout=timeout + 5)

    async def _command(
        self, device_id: str, command: str, fields: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        dev = self.devices.get(device_id)
        if dev is None or dev.conn is None:
            return {"status": "not_connected"}
        if command == "start_record":
            dev.record_started = datetime.now()
            dev.recording = True
        elif command == "stop_record":
            dev.recording = False
        elif "at_lsl" in fields:
            fields = dict(fields)
            at_lsl = fields.pop("at_lsl")
            mapping = dev.conn.est.mapping() if dev.conn.est.ready else None
            if mapping is not None:  # the phone's clock reading at that LSL time
                fields["at"] = float(mapping.invert(np.array([at_lsl]))[0])
        return await dev.conn.command(command, fields, timeout)

    # -------------------------------------------------------------- internals
    def _call(self, coro: Any, timeout: float) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self) -> None:
        lim = self.limits
        self._listener = Listener(
            self.host,
            self._port,
            self._accept,
            ssl_context=self.ssl_context,
            handshake_timeout=self.hello_timeout,
            read_limit=lim.read_buffer,
            max_connections=lim.max_connections,
            max_preauth_per_host=lim.max_preauth_per_host,
            max_preauth=lim.max_preauth,
            on_refused=self._refused,
            busy_frame=P.encode_json(
                P.error_message("busy", PREAUTH_TEXT["busy"], fatal=True)
            ),
        )
        self._port = await self._listener.start()
        self._summaries = asyncio.create_task(self._summarise())

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot
    ) -> None:
        conn = Connection(self, reader, writer)
        self._connections.add(conn)
        self._slots[conn] = slot
        self._handlers.add(asyncio.current_task())
        try:
            await conn.run()
        except Exception:  # pragma: no cover - a bug, never a phone's fault
            logger.exception("phone connection handler failed")
        finally:
            self._connections.discard(conn)
            self._slots.pop(conn, None)
            self._handlers.discard(asyncio.current_task())
            await conn.close("closed")

    def _refused(self, host: str, address: str) -> None:
        """Log (rate-limited) a connection refused by a cap."""
        self.log_error(
            host,
            {
                "category": "device",
                "device_id": None,
                "code": "busy",
                "message": PREAUTH_TEXT["busy"],
                "address": address,
                "fatal": True,
            },
        )

    def authenticated(self, conn: Connection) -> None:
        """Free the pre-authentication slot of ``conn`` (its hello was accepted)."""
        slot = self._slots.get(conn)
        if slot is not None:
            slot.authenticated = True

    def auth_failure(self, host: str) -> float:
        """Count a failed hello from ``host``; return the seconds to wait first.

        Counted per host (an IPv6 /64 is one host) and over all hosts, so many
        addresses do not multiply the guessing rate.
        """
        now = pylsl.local_clock()
        return max(
            self._throttle.failure(host_key(host), now),
            self._throttle_all.failure("*", now),
        )

    async def _summarise(self) -> None:
        while True:
            await asyncio.sleep(self.limits.error_window_s)
            self.events.summarise(everything=False)

    async def _shutdown(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        for conn in list(self._connections):
            await conn.close("relay_stopped")
            conn.abort()
        if self._handlers:  # their sockets are closed: they end by themselves
            await asyncio.wait(list(self._handlers), timeout=2)
        self.events.summarise(everything=True)
        # TLS handshakes and timers still pending: cancel them so the loop stops
        # with nothing left half-done.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=2)

    def log_error(self, host: str, details: dict[str, Any]) -> bool:
        """Record an ``error`` event unless rate-limited (per code and host).

        The text is cut to 200 characters; errors held back are counted and
        logged in one summary ``error`` event per code once their window ends.

        Returns
        -------
        bool
            True if the error was recorded.
        """
        return self.events.error(host, details)

    def log(self, event: str, details: dict[str, Any]) -> None:
        """Record a relay event: history, observers, and the session's log."""
        self.events.log(event, details)

    def session_call(self, method: str, *args: Any) -> None:
        """Run ``session.<method>(*args)`` in the ordered session-I/O thread."""
        self.events.session_call(method, *args)


def _flash_fields(
    duration_ms: int, pulse: int | None, at: float | None
) -> dict[str, Any]:
    """The fields of a ``sync_flash`` command (``at_lsl`` is mapped per phone)."""
    fields: dict[str, Any] = {"duration_ms": int(duration_ms)}
    if pulse is not None:
        fields["pulse"] = int(pulse)
    if at is not None:
        fields["at_lsl"] = float(at)
    return fields
