"""PhoneSimulator: a phone that speaks the full relay protocol with its own clock.

The phone clock is ``(local_clock() + clock_offset) * (1 + drift_ppm·1e-6)``,
plus ``clock_step[1]`` seconds from ``clock_step[0]`` seconds after the start (a
clock stepped once, e.g. by an NTP correction applied to the wrong clock).
Network delays are simulated *virtually* and deterministically: a sync request is
stamped as if it had been sent ``d_up`` earlier, a reply as if it had arrived
``d_down`` later, each delay coming from an `outlets.phone.netsim.Link` per
direction (by default independent draws from ``jitter_ms``, uniform or a
Wi-Fi-like floor plus exponential tail; ``up_link``/``down_link`` give FIFO
head-of-line queueing and stalls). Every message the phone sends (samples,
heartbeats, sync replies) passes through the up link's queue, every message it
receives through the down link's, so queueing behind other traffic happens as
on a TCP connection. Sample streams follow SPEC §6; a sync pulse (a GSR step, a ``sync_pulse``
event and bright rgb frames) occurs every ``pulse_interval`` seconds (never when
it is None: the phone only shows the lab's pulses) and on each ``sync_flash``
command: at the command's ``at`` (phone time) if it is still ahead, else at
once, with the command's ``pulse`` id echoed in the ``sync_flash`` event
(docs/phone-protocol.md §11). Every sample's true LSL time is kept for tests.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from lsl_session.errors import DeviceError
from outlets.phone import protocol as P
from outlets.phone.handshake import CAPABILITIES
from outlets.phone.netsim import Link
from outlets.phone.sim_signals import pulse_flags, signal_values
from outlets.phone.sim_uploads import UploadMixin

logger = logging.getLogger(__name__)


class PhoneSimulator(UploadMixin):
    """Simulated Android phone (see the module docstring).

    Parameters
    ----------
    relay_host, port : str, int
        The relay's address.
    device_id, token : str
        Identity sent in ``hello``.
    clock_offset : float
        Seconds added to the LSL clock to make the phone clock.
    drift_ppm : float
        Phone clock rate error in ppm (+ = fast).
    jitter_ms : tuple[float, float]
        Range of each simulated one-way delay in milliseconds.
    jitter_dist : {"uniform", "wifi"}
        Uniform over the range, or the floor plus an exponential tail (mean a
        sixth of the range, redrawn above the range).
    up_link, down_link : dict | None
        `Link` options (``delay_ms``, ``dist``, ``fifo``, ``stall_rate``,
        ``stall_ms``) for phone → relay and relay → phone; they replace
        ``jitter_ms``/``jitter_dist`` for that direction.
    clock_step : tuple[float, float] | None
        ``(after_s, step_s)``: the phone clock jumps by ``step_s`` once,
        ``after_s`` seconds after the simulator was created.
    tls, cafile : bool, str | None
        Connect with TLS, verifying the relay against ``cafile``.
    cut_upload_after : int | None
        Drop the connection once this many bytes of the first upload were sent,
        then reconnect and resume.
    upload_bps : float | None
        Pace upload chunks to this many bytes per second (a real uplink); None:
        as fast as the socket takes them.
    auto_reconnect : bool
        Reconnect by itself after a broken connection.
    rates, declare_rates : dict, bool
        Sensor rates (Hz) other than the typical ones; declared in ``hello``
        unless ``declare_rates`` is False (an older app).
    stamp_delay : dict | None
        Stream → seconds its samples are stamped late (fault injection).
    """

    def __init__(
        self,
        relay_host: str,
        port: int,
        device_id: str,
        token: str | None = None,
        *,
        clock_offset: float = 0.0,
        drift_ppm: float = 0.0,
        jitter_ms: tuple[float, float] = (1.0, 30.0),
        jitter_dist: str = "uniform",
        up_link: dict | None = None,
        down_link: dict | None = None,
        clock_step: tuple[float, float] | None = None,
        tls: bool = False,
        cafile: str | Path | None = None,
        capabilities: tuple[str, ...] = CAPABILITIES,
        pulse_interval: float | None = 5.0,
        pulse_start: float | None = None,
        pulse_length: float = 0.25,
        batch_s: float = 0.1,
        upload_chunk: int = 64 * 1024,
        cut_upload_after: int | None = None,
        upload_bps: float | None = None,
        auto_reconnect: bool = False,
        seed: int | None = None,
        model: str = "PhoneSimulator",
        rates: dict[str, float] | None = None,
        declare_rates: bool = True,
        stamp_delay: dict[str, float] | None = None,
    ) -> None:
        self.address = (relay_host, int(port))
        self.device_id, self.token = device_id, token
        self.offset, self.drift = float(clock_offset), float(drift_ppm) * 1e-6
        self.jitter = (float(jitter_ms[0]) * 1e-3, float(jitter_ms[1]) * 1e-3)
        if jitter_dist not in ("uniform", "wifi"):
            raise ValueError(
                f"jitter_dist must be 'uniform' or 'wifi', got {jitter_dist!r}"
            )
        self.jitter_dist = jitter_dist
        base = {"delay_ms": tuple(jitter_ms), "dist": jitter_dist}
        seeds = np.random.default_rng(seed).integers(1 << 31, size=2)
        self.up_link = Link(**{"seed": int(seeds[0]), **base, **(up_link or {})})
        self.down_link = Link(**{"seed": int(seeds[1]), **base, **(down_link or {})})
        self.tls, self.cafile = tls, cafile
        self.capabilities = list(capabilities)
        self.streams = [s for s in P.streams_for(self.capabilities) if s != "events"]
        self.pulse_interval, self.pulse_length = pulse_interval, pulse_length
        self.batch_s, self.upload_chunk = batch_s, int(upload_chunk)
        self.cut_upload_after = cut_upload_after
        self.upload_bps = float(upload_bps) if upload_bps else None
        self.auto_reconnect, self.model = auto_reconnect, model
        #: sensor rates (Hz) differing from the typical ones, declared in hello
        #: unless ``declare_rates`` is False (an older app)
        self.rates = {k: float(v) for k, v in (rates or {}).items()}
        self.declared = dict(self.rates) if declare_rates else {}
        #: seconds a stream's samples are stamped late (an app that stamps at
        #: send time, not at capture: a fault the sync check must catch)
        self.stamp_delay = {k: float(v) for k, v in (stamp_delay or {}).items()}
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self.connected = threading.Event()
        self.frozen = False
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._requests: dict[int, Future] = {}
        self._sync_t1: dict[int, float] = {}
        self._burst_left = 0
        self._initial = False
        self._next_burst = 0.0
        self.welcome: dict[str, Any] = {}
        self.errors: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.recording = False
        self._t0 = pylsl.local_clock()
        self.clock_step = None
        if clock_step is not None:
            self.clock_step = (self._t0 + float(clock_step[0]), float(clock_step[1]))
        self._k = dict.fromkeys(self.streams, 0)
        self._truth: dict[str, list[tuple[np.ndarray, ...]]] = {
            s: [] for s in self.streams
        }
        self._unsent: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
            s: [] for s in self.streams
        }
        #: (true time, phone time, label, pulse id or None) of every event
        self.events: list[tuple[float, float, str, int | None]] = []
        self._unsent_events: list[tuple[float, str, int | None]] = []
        self.pulses: list[float] = []
        # pulse_start: LSL time of the first pulse, to share a lab-wide schedule
        self._next_pulse = (
            float("inf")
            if not pulse_interval
            else self._t0 + pulse_interval
            if pulse_start is None
            else float(pulse_start)
        )
        self._uploads_pending = threading.Event()
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- clock
    def uploads_done(self) -> bool:
        """True once the uploads started by the last ``stop_record`` finished."""
        return not self._uploads_pending.is_set()

    def phone_clock(self, true_time: float | np.ndarray | None = None) -> Any:
        """Phone time at LSL time ``true_time`` (now if None)."""
        t = pylsl.local_clock() if true_time is None else true_time
        p = (t + self.offset) * (1.0 + self.drift)
        if self.clock_step is not None:
            at, step = self.clock_step
            p = p + np.where(np.asarray(t) >= at, step, 0.0)
            if np.ndim(p) == 0:
                p = float(p)
        return p

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 10.0) -> PhoneSimulator:
        """Connect, say hello and start streaming; return after ``welcome``.

        Raises
        ------
        DeviceError
            If the relay refuses the phone or cannot be reached.
        """
        self.connect(timeout)
        for target in (self._sampler, self._syncer):
            t = threading.Thread(
                target=target, daemon=True, name=f"{self.device_id}-{target.__name__}"
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        """Send what is left, say bye and close; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        for t in self._threads:
            if t.name.endswith(("_sampler", "_syncer")):
                t.join(2)
        if self.connected.is_set() and not self.frozen:
            self._generate(pylsl.local_clock())
            self._flush(force=True)
            self._send(P.encode_json({"type": "bye"}))
        self._close_socket()
        for t in self._threads:
            t.join(2)

    def connect(self, timeout: float = 10.0) -> None:
        """Open a connection and exchange hello/welcome; resume unsent data."""
        raw = socket.create_connection(self.address, timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        try:
            if self.tls:
                ctx = ssl.create_default_context(cafile=self.cafile)
                sock = ctx.wrap_socket(raw, server_hostname=self.address[0])
            hello = {
                "type": "hello",
                "id": next(self._ids),
                "protocol": P.PROTOCOL_VERSION,
                "device_id": self.device_id,
                "token": self.token,
                "capabilities": self.capabilities,
                **({"rates": self.declared} if self.declared else {}),
                "model": self.model,
                "manufacturer": "lsl_session",
                "app_version": "sim",
            }
            sock.sendall(P.encode_json(hello))
            decoder = P.FrameDecoder()
            welcome = None
            while welcome is None:
                data = sock.recv(65536)
                if not data:
                    raise DeviceError(f"{self.device_id}: relay closed the connection")
                for msg in decoder.feed(data):
                    if msg.type == "error":
                        raise DeviceError(
                            f"{self.device_id}: relay refused: "
                            f"{msg.get('code')}: {msg.get('message')}"
                        )
                    if msg.type == "welcome":
                        welcome = msg.fields
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        self.welcome = welcome
        self._resume(welcome.get("resume", {}))
        with self._lock:
            self._sock = sock
            sched = welcome.get("sync", {})
            self._burst_left = int(sched.get("initial_burst", 48))
            self._initial = True
        self.frozen = False
        self.connected.set()
        t = threading.Thread(
            target=self._reader,
            args=(sock, decoder),
            daemon=True,
            name=f"{self.device_id}-reader",
        )
        t.start()
        self._threads.append(t)

    def freeze(self) -> None:
        """Stop sending anything (a silent network cut); the socket stays open."""
        self.frozen = True

    def drop(self, *, graceful: bool = False) -> None:
        """Break the connection without ``bye``.

        With ``graceful``, only the sending side is shut (the relay reads every
        byte already sent, then sees end-of-file); otherwise the socket is closed
        at once.
        """
        if graceful:
            with self._lock:
                sock = self._sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self.connected.clear()
                return
        self._close_socket()

    def _close_socket(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        self.connected.clear()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _resume(self, resume: dict[str, float]) -> None:
        with self._lock:
            for s in self.streams:
                last = resume.get(s)
                if last is None or not self._truth[s]:
                    continue
                _, p, v = self.truth(s)
                keep = p > last
                self._unsent[s] = [(p[keep], v[keep])] if keep.any() else []
            if "events" in resume:
                self._unsent_events = [
                    (p, lab, k) for _, p, lab, k in self.events if p > resume["events"]
                ]

    # ----------------------------------------------------------- ground truth
    def truth(self, stream: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (true LSL times, phone times, values) of every generated sample."""
        with self._lock:
            chunks = list(self._truth[stream])
        if not chunks:
            n = P.STREAMS[stream].channel_count
            return np.empty(0), np.empty(0), np.empty((0, n))
        return tuple(np.concatenate(c) for c in zip(*chunks, strict=True))

    # ------------------------------------------------------------ generation
    def _generate(self, now: float) -> None:
        with self._lock:
            while self._next_pulse <= now:
                self._add_pulse(self._next_pulse, "sync_pulse")
                self._next_pulse += self.pulse_interval
            onsets = np.asarray(self.pulses)
            for s in self.streams:
                rate = self.rate(s)
                k_end = int(np.floor((now - self._t0) * rate)) + 1
                k = np.arange(self._k[s], k_end)
                if len(k) == 0:
                    continue
                self._k[s] = k_end
                true_t = self._t0 + k / rate
                pulse = pulse_flags(onsets, true_t, self.pulse_length, s, rate)
                values = signal_values(s, k, true_t - self._t0, pulse)
                phone_t = self.phone_clock(true_t + self.stamp_delay.get(s, 0.0))
                self._truth[s].append((true_t, phone_t, values))
                self._unsent[s].append((phone_t, values))

    def _add_pulse(self, onset: float, label: str, pulse: int | None = None) -> None:
        bisect.insort(self.pulses, onset)
        p = float(self.phone_clock(onset))
        self.events.append((onset, p, label, pulse))
        self._unsent_events.append((p, label, pulse))

    def rate(self, stream: str) -> float:
        """The rate (Hz) this phone samples ``stream`` at."""
        return float(self.rates.get(stream, P.STREAMS[stream].nominal_rate))

    def true_time(self, phone_time: float) -> float:
        """LSL time at which the phone clock reads ``phone_time`` (inverse clock)."""
        t = phone_time / (1.0 + self.drift) - self.offset
        if self.clock_step is not None and t >= self.clock_step[0]:
            t -= self.clock_step[1] / (1.0 + self.drift)
        return float(t)

    # --------------------------------------------------------------- threads
    def _sampler(self) -> None:
        next_send = next_beat = pylsl.local_clock()
        beat = float(self.welcome.get("heartbeat_interval_s", 1.0))
        while not self._stop.wait(0.02):
            now = pylsl.local_clock()
            self._generate(now)
            if now >= next_send:
                self._flush()
                next_send = now + self.batch_s
            if now >= next_beat and self._can_send():
                self._send(
                    P.encode_json(
                        {
                            "type": "heartbeat",
                            "t": self.phone_clock(now),
                            "battery": 0.87,
                            "storage_free_mb": 12000,
                            "recording": self.recording,
                        }
                    )
                )
                next_beat = now + beat

    def _flush(self, force: bool = False) -> None:
        if not (self._can_send() or (force and self.connected.is_set())):
            return
        with self._lock:
            batches = {s: self._unsent[s] for s in self.streams}
            events = self._unsent_events
            self._unsent = {s: [] for s in self.streams}
            self._unsent_events = []
        frames = []
        for s, chunks in batches.items():
            if chunks:
                p = np.concatenate([c[0] for c in chunks])
                v = np.concatenate([c[1] for c in chunks])
                for i in range(0, len(p), 4096):
                    frames.append(P.encode_samples(s, p[i : i + 4096], v[i : i + 4096]))
        frames += [
            P.encode_json(
                {"type": "event", "t": p, "label": lab}
                | ({} if k is None else {"pulse": k})
            )
            for p, lab, k in events
        ]
        if frames and not self._send(b"".join(frames)):
            with self._lock:  # keep them for the resume after a reconnect
                for s, chunks in batches.items():
                    self._unsent[s][:0] = chunks
                self._unsent_events[:0] = events

    def _syncer(self) -> None:
        while not self._stop.is_set():
            sched = self.welcome.get("sync", {})
            spacing = float(sched.get("spacing_ms", 62)) / 1e3
            if self._initial:
                spacing = float(sched.get("initial_spacing_ms", spacing * 1e3)) / 1e3
            now = pylsl.local_clock()
            if not self._can_send():
                self._stop.wait(0.01)
                continue
            with self._lock:
                if self._burst_left == 0 and now >= self._next_burst:
                    self._burst_left = int(sched.get("burst", 16))
                    self._next_burst = now + float(sched.get("interval_s", 1.0))
                go = self._burst_left > 0
                self._burst_left -= int(go)
                if self._burst_left == 0:
                    self._initial = False
            if go:
                seq = next(self._seq)

                def request(delay: float, seq: int = seq) -> bytes:
                    t1 = self.phone_clock(pylsl.local_clock() - delay)
                    self._sync_t1[seq] = t1
                    return P.encode_json({"type": "sync_req", "seq": seq, "t1": t1})

                self._send(request)
            self._stop.wait(spacing if go else 0.01)

    def _can_send(self) -> bool:
        return self.connected.is_set() and not self.frozen and not self._stop.is_set()

    def _send(self, data: bytes | Callable[[float], bytes]) -> bool:
        """Send bytes, or what ``data(up_delay)`` builds (a sync request).

        Every send draws its virtual delay from the up link, in order, so the
        link's queue sees all traffic.
        """
        with self._lock:
            sock = self._sock
        if sock is None:
            return False
        try:
            with self._send_lock:
                delay = self.up_link.delay(pylsl.local_clock())
                sock.sendall(data(delay) if callable(data) else data)
            return True
        except OSError:
            return False

    def _reader(self, sock: socket.socket, decoder: P.FrameDecoder) -> None:
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                for msg in decoder.feed(data):
                    self._handle(msg, self.down_link.delay(pylsl.local_clock()))
        except (OSError, P.ProtocolError):
            pass
        with self._lock:
            mine = self._sock is sock
        if mine:
            self._close_socket()
            if self.auto_reconnect and not self._stop.is_set():
                threading.Thread(target=self._reconnect_loop, daemon=True).start()

    def _reconnect_loop(self) -> None:
        while not self._stop.wait(0.5) and not self.connected.is_set():
            try:
                self.connect()
            except (OSError, DeviceError) as exc:
                logger.info("%s: reconnect failed: %s", self.device_id, exc)

    # -------------------------------------------------------------- messages
    def _handle(self, msg: P.Message, delay: float = 0.0) -> None:
        kind = msg.type
        if kind == "sync_resp":
            t1 = self._sync_t1.pop(msg.get("seq"), None)
            if t1 is not None and not self.frozen:
                t4 = self.phone_clock(pylsl.local_clock() + delay)
                self._send(
                    P.encode_json(
                        {"type": "sync_done", "seq": msg.get("seq"), "t1": t1, "t4": t4}
                    )
                )
            return
        fut = self._requests.pop(msg.get("re"), None) if "re" in msg.fields else None
        if fut is not None:
            fut.set_result(msg.fields)
        if kind == "error":
            self.errors.append(msg.fields)
        elif kind in ("start_record", "stop_record", "sync_flash", "marker"):
            self._command(msg)

    def _command(self, msg: P.Message) -> None:
        self.commands.append(msg.fields)
        now = pylsl.local_clock()
        if msg.type == "start_record":
            self.recording = True
        elif msg.type == "stop_record":
            self.recording = False
            self._uploads_pending.set()
            threading.Thread(
                target=self._upload_all, daemon=True, name=f"{self.device_id}-upload"
            ).start()
        elif msg.type in ("sync_flash", "marker"):
            with self._lock:
                if msg.type == "sync_flash":
                    now = self._flash_time(msg, now)
                    pulse = msg.get("pulse")
                    ok = isinstance(pulse, int) and not isinstance(pulse, bool)
                    self._add_pulse(now, "sync_flash", pulse if ok else None)
                else:
                    p = float(self.phone_clock(now))
                    label = str(msg.get("label", ""))
                    self.events.append((now, p, label, None))
                    self._unsent_events.append((p, label, None))
        if not self.frozen:
            ack = {
                "type": "ack",
                "re": msg.get("id"),
                "status": "ok",
                "t": self.phone_clock(now),
            }
            if msg.type == "stop_record":  # announce the files about to come
                ack["uploads"] = [
                    {"file_type": kind}
                    for kind in ("rgb", "thermal")
                    if f"{kind}_video" in self.capabilities
                ]
            self._send(P.encode_json(ack))

    def _flash_time(self, msg: P.Message, now: float) -> float:
        """When to flash: at the command's ``at`` (phone time) if ahead, else now."""
        at = msg.get("at")
        if isinstance(at, int | float) and not isinstance(at, bool):
            onset = self.true_time(float(at))
            if now < onset < now + 60.0:
                return onset
        return now

    def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a message with a fresh ``id`` and wait for the reply naming it."""
        fut: Future = Future()
        message = dict(message, id=next(self._ids))
        self._requests[message["id"]] = fut
        if not self._send(P.encode_json(message)):
            raise ConnectionError("not connected")
        return fut.result(timeout)
