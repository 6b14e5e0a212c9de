"""One phone connection inside the relay: hello, sync, samples, commands, uploads."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

import numpy as np
import pylsl

from outlets.phone import protocol as P
from outlets.phone.clock import ClockEstimator
from outlets.phone.clock_stream import ClockOutlets
from outlets.phone.handshake import hello_info, validate_hello
from outlets.phone.limits import PREAUTH_TEXT, clean_heartbeat, cut
from outlets.phone.protocol import Message, ProtocolError
from outlets.phone.state import DeviceState, RelayHost
from outlets.phone.streams import PhoneOutlets
from outlets.phone.upload_messages import handle_upload

logger = logging.getLogger(__name__)

#: Close a phone that does not read its socket once this much output is queued.
MAX_WRITE_BUFFER = 8 * 1024 * 1024
# After a fatal error the relay half-closes and discards input this long, so the
# error reply reaches the phone instead of being wiped out by a TCP reset.
LINGER_SECONDS = 1.0
#: Extra error fields that may go out before authentication (the relay's own).
_PREAUTH_EXTRA = ("retry_after_s",)


class Connection:
    """Serve one TCP connection until it closes."""

    def __init__(
        self,
        relay: RelayHost,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.relay = relay
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.host = str(peer[0]) if peer else "?"
        self.address = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.device: DeviceState | None = None
        self.rejected_times = 0
        self._pending_bytes = 0
        self.est = ClockEstimator()
        self.last_rx = pylsl.local_clock()
        self.errors = 0
        self.closed = False
        self._ids = itertools.count(1)
        self._acks: dict[int, tuple[asyncio.Future, str, float]] = {}
        self._sync: dict[int, tuple[float, float, float]] = {}
        self._pending: list[tuple] = []
        self._tasks: list[asyncio.Task] = []
        self.hello: dict[str, Any] = {}
        self.streams: list[str] = []
        self._fit_stored = False
        #: the device's estimator from its last (closed) connection, adopted at the
        #: first exchange if the phone clock continues it (`_continues`)
        self._inherit: ClockEstimator | None = None

    # ------------------------------------------------------------------ I/O
    def send(self, message: dict[str, Any]) -> None:
        """Queue a JSON message (dropped if the connection is closed)."""
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(P.encode_json(message))
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            logger.warning("%s does not read its socket; closing", self.address)
            asyncio.get_running_loop().create_task(self.close("not_reading"))

    def held_bytes(self) -> int:
        """Bytes this connection holds: received, unsynced and unsent data."""
        # asyncio keeps received bytes in StreamReader._buffer (no public accessor)
        received = len(getattr(self.reader, "_buffer", b""))
        transport = self.writer.transport
        unsent = 0 if transport.is_closing() else transport.get_write_buffer_size()
        return received + self._pending_bytes + unsent

    async def _read(self, max_frame: int | None = None) -> tuple[Message, float]:
        header = await self.reader.readexactly(4)
        n = P.parse_length(header, max_frame or self.relay.max_frame)
        payload = await self.reader.readexactly(n)
        t_rx = pylsl.local_clock()
        self.last_rx = t_rx
        return P.validate(P.decode_payload(payload)), t_rx

    def _reply_error(self, exc: ProtocolError, re_id: Any = None) -> None:
        """Answer an error; log it (rate-limited); raise if it ends the connection.

        Before authentication the text is a fixed one per code and nothing the
        peer sent (not even its message id) goes back or into the log.
        """
        self.errors += 1
        fatal = exc.fatal or self.errors > self.relay.max_errors
        message, extra = cut(exc.message), exc.extra
        if self.device is None:
            message = PREAUTH_TEXT.get(exc.code, "refused")
            extra = {k: v for k, v in extra.items() if k in _PREAUTH_EXTRA}
            re_id = None
        self.send(
            P.error_message(
                exc.code,
                message,
                fatal=fatal,
                re_id=re_id if P._is_int(re_id) else None,
                **extra,
            )
        )
        self.relay.log_error(
            self.host,
            {
                "category": "device",
                "device_id": self._name(),
                "code": exc.code,
                "message": message,
                "address": self.address,
                "fatal": fatal,
            },
        )
        if fatal:
            raise ConnectionAbortedError(exc.code)

    def _name(self) -> str | None:
        return self.device.device_id if self.device else None

    # ------------------------------------------------------------- lifecycle
    async def run(self) -> None:
        """Handle hello, then messages until EOF, a fatal error or a timeout."""
        try:
            try:
                msg, _ = await asyncio.wait_for(
                    self._read(self.relay.limits.preauth_max_frame),
                    self.relay.hello_timeout,
                )
                if msg.type != "hello":
                    raise ProtocolError(
                        "hello_required",
                        "the first message must be 'hello'",
                        fatal=True,
                    )
                self._hello(msg)
            except ProtocolError as exc:
                exc.fatal = True  # nothing but a valid hello opens a connection
                if exc.code == "auth_failed":
                    delay = self.relay.auth_failure(self.host)
                    if delay > 0:  # throttle guessing: the answer waits
                        exc.extra["retry_after_s"] = delay
                        await asyncio.sleep(delay)
                self._reply_error(exc)
            except TimeoutError:
                self.send(
                    P.error_message("hello_timeout", "no hello received", fatal=True)
                )
                return
            self._tasks = [
                asyncio.create_task(self._heartbeat()),
                asyncio.create_task(self._watchdog()),
            ]
            while not self.closed:
                try:
                    msg, t_rx = await self._read()
                    await self._dispatch(msg, t_rx)
                except ProtocolError as exc:
                    self._reply_error(exc, getattr(exc, "re_id", None))
        except ConnectionAbortedError:
            await self._linger()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            await self.close("eof" if not self.closed else "closed")

    async def _linger(self) -> None:
        """Flush the error reply, half-close, and discard input for a moment.

        Closing a socket with unread input makes the kernel send a reset, which
        can destroy the reply still in flight; draining first gives a clean FIN.
        """

        async def drain_input() -> None:
            await self.writer.drain()
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while await self.reader.read(65536):
                pass

        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            await asyncio.wait_for(drain_input(), LINGER_SECONDS)

    async def close(self, reason: str) -> None:
        """Close the socket and, if this was a device's live connection, detach it."""
        if self.closed:
            return
        self.closed = True
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for fut, _, _ in self._acks.values():
            if not fut.done():
                fut.set_result({"status": "disconnected"})
        with contextlib.suppress(Exception):
            self.writer.close()
        dev = self.device
        if self._pending and dev is not None:
            if dev.outlets is not None and len(self.est) >= 8:
                pending, self._pending = self._pending, []
                self._pending_bytes = 0
                for item in pending:  # best fit available beats losing them
                    self._push(item)
            else:
                logger.warning(
                    "%s: %d batches dropped (no clock sync before close)",
                    dev.device_id,
                    len(self._pending),
                )
        if dev is not None and dev.conn is self:
            self._record_knots(final=True)
        if self.relay.uploads is not None:
            self.relay.uploads.release(self)
        if dev is None or dev.conn is not self:
            return
        dev.conn = None
        now = pylsl.local_clock()
        q = self.est.quality()
        self.relay.log(
            "device_disconnected",
            {
                "device_id": dev.device_id,
                "reason": reason,
                "address": self.address,
                "detected_lsl": now,
                "last_rx_lsl": self.last_rx,
                "silent_s": round(now - self.last_rx, 4),
                "heartbeat_timeout_s": self.relay.heartbeat_timeout,
            },
        )
        self.relay.session_call("set_device_status", dev.device_id, "disconnected")
        if q is not None:
            self.relay.session_call("clock_sync", dev.device_id, q.as_dict())
        gen = dev.generation
        asyncio.get_running_loop().call_later(
            self.relay.outlet_grace_s, self._expire, dev, gen
        )

    def abort(self) -> None:
        """Drop the socket at once (no TLS goodbye) and end any pending read."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()
        self.reader.feed_eof()

    @staticmethod
    def _expire(dev: DeviceState, generation: int) -> None:
        if dev.conn is None and dev.generation == generation and dev.outlets:
            logger.info("closing outlets of %s after the grace period", dev.device_id)
            dev.outlets.close()
            dev.outlets = None
            if dev.clock is not None:
                dev.clock.close()
                dev.clock = None

    async def _heartbeat(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.relay.heartbeat_interval)
            self.send({"type": "heartbeat", "t": pylsl.local_clock()})
            if self.device is not None and self.device.outlets is not None:
                self.device.outlets.flush_holds()  # a consumer came, no new sample

    async def _watchdog(self) -> None:
        step = min(0.1, self.relay.heartbeat_timeout / 10)
        while not self.closed:
            await asyncio.sleep(step)
            if pylsl.local_clock() - self.last_rx > self.relay.heartbeat_timeout:
                await self.close("heartbeat_timeout")

    # ----------------------------------------------------------------- hello
    def _hello(self, msg: Message) -> None:
        relay = self.relay
        version = msg.get("protocol")
        device_id = msg.get("device_id")
        caps = validate_hello(msg, relay.tokens)
        relay.authenticated(self)
        dev = relay.devices.setdefault(device_id, DeviceState(device_id))
        previous = dev.conn
        reconnect = dev.outlets is not None or previous is not None
        if previous is not None:
            dev.conn = None
            relay.log(
                "device_disconnected",
                {
                    "device_id": device_id,
                    "reason": "replaced",
                    "address": previous.address,
                    "detected_lsl": pylsl.local_clock(),
                    "last_rx_lsl": previous.last_rx,
                    "heartbeat_timeout_s": relay.heartbeat_timeout,
                },
            )
            asyncio.get_running_loop().create_task(previous.close("replaced"))
        self.device = dev
        last = dev.estimator
        if previous is None and last is not None and last.ready:
            self._inherit = last  # a reconnect: keep the clock history if it holds
        dev.conn, dev.address, dev.estimator = self, self.address, self.est
        dev.generation += 1
        self.hello = hello_info(msg, caps)
        self.streams = P.streams_for(caps)
        resume = dict(dev.outlets.last_time) if dev.outlets else {}
        # outlets exist from hello on, so a running recorder attaches while the
        # clock fit converges; samples wait for the fit and a consumer (streams.py)
        if dev.outlets is None:
            sync = {f"schedule_{k}": v for k, v in relay.sync_schedule.items()}
            dev.outlets = PhoneOutlets(
                device_id, self.streams, hello=self.hello, sync=sync, rig=relay.rig
            )
        else:
            dev.outlets.add(self.streams)  # a capability the phone did not have
        if dev.clock is None:
            dev.clock = ClockOutlets(device_id, rig=relay.rig)
            dev.clock.open()
        self.send(
            {
                "type": "welcome",
                "re": msg.get("id"),
                "protocol": P.PROTOCOL_VERSION,
                "relay_time": pylsl.local_clock(),
                "session_id": relay.session.session_id if relay.session else None,
                "heartbeat_interval_s": relay.heartbeat_interval,
                "heartbeat_timeout_s": relay.heartbeat_timeout,
                "sync": relay.sync_schedule,
                "max_frame": relay.max_frame,
                "streams": self.streams,
                "resume": resume,
                "uploads": relay.uploads is not None,
            }
        )
        relay.session_call("add_device", device_id, "android_phone", caps)
        relay.log(
            "device_connected",
            {
                "device_id": device_id,
                "address": self.address,
                "protocol": version,
                "model": self.hello.get("model", ""),
                "reconnect": reconnect,
            },
        )

    # -------------------------------------------------------------- dispatch
    async def _dispatch(self, msg: Message, t_rx: float) -> None:
        kind = msg.type
        if kind == "sync_req":
            t3 = pylsl.local_clock()
            self._sync[msg.get("seq")] = (msg.get("t1"), t_rx, t3)
            if len(self._sync) > 512:
                self._sync.pop(next(iter(self._sync)))
            self.send(
                {
                    "type": "sync_resp",
                    "seq": msg.get("seq"),
                    "t1": msg.get("t1"),
                    "t2": t_rx,
                    "t3": t3,
                }
            )
        elif kind == "sync_done":
            self._sync_done(msg)
        elif kind == "heartbeat":
            self.device.phone_status.update(clean_heartbeat(msg.fields))
        elif kind in ("samples", "event"):
            if msg.type == "samples":
                item = ("samples", *P.decode_samples(msg))
                size = item[2].nbytes + item[3].nbytes
            else:
                item = ("event", event_label(msg), float(msg.get("t")))
                size = len(item[1]) + 8
            if self.device.outlets is None or not self.est.ready:
                limits = self.relay.limits
                if (
                    len(self._pending) >= limits.max_pending_batches
                    or self._pending_bytes + size > limits.max_pending_bytes
                ):
                    raise ProtocolError(
                        "not_synced",
                        "no clock sync yet; send the sync burst before streaming "
                        f"(at most {limits.max_pending_bytes} bytes are held)",
                    )
                self._pending.append(item)
                self._pending_bytes += size
            else:
                self._check_times(self._push(item))
        elif kind == "ack":
            entry = self._acks.pop(msg.get("re"), None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(dict(msg.fields, rx_lsl=t_rx))
        elif kind.startswith("upload_"):
            await handle_upload(self, msg)
        elif kind == "bye":
            await self.close("bye")

    def _sync_done(self, msg: Message) -> None:
        stored = self._sync.pop(msg.get("seq"), None)
        if stored is None:
            return
        t1, t2, t3 = stored
        t4 = float(msg.get("t4"))
        dev = self.device
        if dev.clock is not None:
            dev.clock.push_exchange(t1, t2, t3, t4, dev.generation)
        if self._inherit is not None:
            last, self._inherit = self._inherit, None
            if _continues(last, t1, t2, t3, t4):
                self.est = dev.estimator = last
                logger.info("%s: reconnected with the same phone clock: its clock "
                            "history is kept", dev.device_id)  # fmt: skip
        resets = self.est.resets
        if not self.est.add(t1, t2, t3, t4):
            return
        if self.est.resets != resets:
            self.relay.log(
                "clock_step", {"device_id": dev.device_id, "resets": self.est.resets}
            )
        if self.est.ready and not self._fit_stored:
            self._fit_stored = True
            self.relay.session_call(
                "clock_sync", dev.device_id, self.est.quality().as_dict()
            )
        if self.est.ready and dev.outlets is not None and self._pending:
            pending, self._pending = self._pending, []
            self._pending_bytes = 0
            self._check_times(sum(self._push(item) for item in pending))

    def _plausible(self, lsl_t: np.ndarray) -> np.ndarray:
        """Mask of mapped times inside the plausible window around the relay clock."""
        now, limits = pylsl.local_clock(), self.relay.limits
        return (lsl_t >= now - limits.past_window_s) & (
            lsl_t <= now + limits.future_window_s
        )

    def _push(self, item: tuple) -> int:
        """Push a batch or event; return how many rows had implausible times.

        Implausible rows are dropped before the outlets see them, so they never
        move the duplicate filter (``PhoneOutlets.last_time``).
        """
        outlets = self.device.outlets
        if item[0] == "samples" and item[1] not in self.streams:
            return 0  # not a capability of this connection (docs: ignored)
        if item[0] == "event":
            _, label, t = item
            lsl_t = float(self.est.map(t))
            if not self._plausible(np.array([lsl_t]))[0]:
                return 1
            outlets.push_event(label, t, lsl_t)
            self._record_knots()
            return 0
        _, stream, phone_t, values = item
        lsl_t = self.est.map(phone_t)
        ok = self._plausible(lsl_t)
        rejected = len(ok) - int(ok.sum())
        if rejected:
            phone_t, lsl_t, values = phone_t[ok], lsl_t[ok], values[ok]
            if len(phone_t) == 0:
                return rejected
        outlets.push(stream, phone_t, lsl_t, values)
        self._record_knots()
        for cb in self.relay.push_observers:
            cb(self.device.device_id, stream, phone_t, lsl_t)
        return rejected

    def _record_knots(self, final: bool = False) -> None:
        """Push the live mapping's new knots on ``<device>_clock``."""
        dev = self.device
        knots = self.est.drain_knots(final=final)
        if dev.clock is not None:
            dev.clock.push_knots(knots, dev.generation)

    def _check_times(self, rejected: int) -> None:
        if rejected:
            self.rejected_times += rejected
            limits = self.relay.limits
            raise ProtocolError(
                "bad_time",
                f"{rejected} rows dropped: time outside -{limits.past_window_s:g} s"
                f" .. +{limits.future_window_s:g} s of the relay clock once mapped",
            )

    # -------------------------------------------------------------- commands
    async def command(
        self, command: str, fields: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Send a command, wait for its ack, log ``device_ack``; return the ack."""
        cid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        sent = pylsl.local_clock()
        self._acks[cid] = (fut, command, sent)
        self.send({"type": command, "id": cid, **fields})
        try:
            ack = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._acks.pop(cid, None)
            ack = {"status": "timeout"}
        details: dict[str, Any] = {
            "device_id": self._name(),
            "command": command,
            "ack_id": cid,
            "status": cut(ack.get("status"), 32),
            "message": str(ack.get("message", ""))[:200],
        }
        if "rx_lsl" in ack:
            details["rtt_ms"] = round((ack["rx_lsl"] - sent) * 1e3, 3)
        t = ack.get("t")
        if P._is_num(t) and self.est.ready:
            details["phone_time"] = t
            details["lsl_time_mapped"] = float(self.est.map(t))
        if ack.get("status") in ("ok", "error"):
            self.relay.log("device_ack", details)
        else:
            self.relay.log("error", {"category": "device", **details})
        return ack


#: How far the first exchange of a reconnect may miss the last connection's
#: mapping (beyond its own round-trip bounds) for the clock history to be kept.
CONTINUITY_TOLERANCE_S = 2e-3


def _continues(est: ClockEstimator, t1: float, t2: float, t3: float, t4: float) -> bool:
    """True when an exchange agrees with ``est``'s mapping: the same phone clock.

    The offset θ = LSL − phone lies between ``t3 − t4`` and ``t2 − t1`` (the
    exchange's one-way bounds); a phone that restarted its clock (a reloaded
    page's ``performance.now()``) misses by far more than the tolerance and
    starts from a fresh estimator. A reconnect that keeps the history keeps its
    good exchanges, so exchanges queued behind an upload after the reconnect do
    not make a new, biased fit.
    """
    try:
        x = 0.5 * (t1 + t4)
        theta = float(est.map(x)) - x
    except Exception:  # no mapping: nothing to continue
        return False
    tol = CONTINUITY_TOLERANCE_S
    return bool((t3 - t4) - tol <= theta <= (t2 - t1) + tol)


def event_label(msg: P.Message) -> str:
    """The label pushed for an ``event``: ``label``, then `` <pulse>`` if it has one.

    A phone echoes the lab's pulse id of a ``sync_flash`` command in the event's
    ``pulse`` field (an integer ≥ 0): the label becomes ``sync_flash 7``.
    """
    label = msg.get("label")[:1024]
    pulse = msg.get("pulse")
    if isinstance(pulse, int) and not isinstance(pulse, bool) and 0 <= pulse < 10**12:
        return f"{label} {pulse}"
    return label
