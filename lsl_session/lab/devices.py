"""The lab's devices: one runner per device kind, real or simulated backend.

Each runner starts its outlet (and, when simulated, the simulated hardware behind
it: phone simulators against the real relay, the Shimmer emulator on a pty through
real pyshimmer, the synthetic video through OpenCV), reports whether the device
streams, and stops it. ``outlets`` is imported here only, lazily: the core never
imports device code at import time.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylsl

from lsl_session.config import DeviceConfig, SessionConfig
from lsl_session.errors import DeviceError
from lsl_session.rig import exact_query, source_id, this_host

logger = logging.getLogger(__name__)

#: Seconds a simulated webcam may take to produce its first frame.
FIRST_FRAME_TIMEOUT = 10.0


@dataclass
class SyncClock:
    """The lab's sync-pulse schedule: pulse ``k`` (its id) at ``t0 + k * period``.

    The marker stream pushes ``sync_pulse k``; simulated devices that follow the
    schedule by themselves (the synthetic webcam, the Shimmer emulator) pulse at
    the same times; devices that must be told (phones) subscribe with `listen`
    and are called before each pulse (`announce`).
    """

    period: float
    t0: float | None = None
    #: Seconds new outlets hold their first samples until the recorder attached.
    consumer_wait: float = 0.0
    listeners: list[Callable[[int, float], None]] = field(default_factory=list)

    def listen(self, callback: Callable[[int, float], None]) -> None:
        """Call ``callback(k, when)`` before each pulse (once per callback)."""
        if callback not in self.listeners:
            self.listeners.append(callback)

    def announce(self, k: int, when: float) -> None:
        """Tell every listener that pulse ``k`` comes at LSL time ``when``."""
        for callback in list(self.listeners):
            callback(k, when)

    def pulse_times(self, until: float) -> list[float]:
        """LSL times of pulses 1 … n up to ``until``."""
        assert self.t0 is not None
        n = int(max(0.0, until - self.t0) // self.period)
        return [self.t0 + self.period * k for k in range(1, n + 1)]


class DeviceRunner:
    """One configured device: start, stop, state, the streams it owns."""

    kind = "device"

    def __init__(self, config: DeviceConfig, rig: str | None = None) -> None:
        self.config = config
        self.device_id = config.device_id
        self.required = config.required
        self.simulated = config.simulate
        #: The rig identity in the source_ids of this device's streams.
        self.rig = rig
        self.error: str | None = None

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        """Start the device's outlet (raises `DeviceError` on failure).

        Without a session, files go to the current folder and nothing is
        registered (``lsl-session outlet simulate``).
        """
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the device (idempotent, never raises)."""

    def streaming(self) -> bool:
        """Whether the device currently streams."""
        return False

    def ended(self) -> bool:
        """Whether the device finished on its own (a video file at its end)."""
        return False

    def connections(self) -> int:
        """How many times the device (re)connected so far."""
        return 1 if self.streaming() else 0

    def owns(self, stream_name: str) -> bool:
        """Whether ``stream_name`` is one of this device's streams."""
        return False

    def queries(self) -> list[str]:
        """LSL queries matching this device's streams (for the recorder).

        One query per device: its exact source_id(s), which hold the rig, and
        this host when the outlets run here (not for a device with a ``host``:
        its agent runs it), never a prefix other rigs share.
        """
        own = self.own_source_ids()
        if not own:
            return []
        return [exact_query(own, None if self.config.host else this_host())]

    def own_source_ids(self) -> list[str]:
        """Every source_id this device may publish (whether it streams or not)."""
        return []

    def source_ids(self) -> list[str]:
        """The source ids of the streams the device publishes now."""
        return []

    def detail(self) -> str:
        """A short description for the status table."""
        return "simulated" if self.simulated else ""


class ShimmerRunner(DeviceRunner):
    """A Shimmer3 GSR+ on the config's ``port``, or the emulator on a pty."""

    kind = "shimmer_gsr"

    def __init__(self, config: DeviceConfig, rig: str | None = None) -> None:
        super().__init__(config, rig)
        suffix = config.device_id.removeprefix("shimmer_")
        self.outlet_id = suffix or config.device_id
        self.stream_name = f"shimmer_{self.outlet_id}"
        self.source_id = source_id(rig, self.stream_name)
        self.outlet: Any = None
        self.emulator: Any = None

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        from outlets.shimmer import ShimmerEmulator, ShimmerError, ShimmerOutlet

        rate = float(self.config.options.get("rate") or 128.0)
        port = self.config.options.get("port")
        try:
            if self.simulated:
                self.emulator = ShimmerEmulator(
                    rate=rate, clock_offset=12.5, drift_ppm=40.0, seed=7
                ).start()
                port = self.emulator.port
            self.outlet = ShimmerOutlet(
                port,
                device_id=self.outlet_id,
                source_id=self.source_id,
                rate=rate,
                consumer_wait=clock.consumer_wait,
            )
            self.outlet.start()
        except (ShimmerError, OSError) as exc:
            self.stop()
            raise DeviceError(f"{self.device_id}: {exc}") from None
        if self.emulator is not None and clock.t0 is not None:
            self.emulator.schedule_sync_pulses(clock.pulse_times(clock.t0 + 86400))

    def stop(self) -> None:
        for part in (self.outlet, self.emulator):
            if part is None:
                continue
            try:
                part.stop() if part is self.outlet else part.close()
            except Exception:
                logger.exception("stopping %s failed", self.device_id)
        self.outlet = self.emulator = None

    def streaming(self) -> bool:
        return self.outlet is not None and bool(self.outlet.connected)

    def connections(self) -> int:
        return 0 if self.outlet is None else int(self.outlet.stats.connects)

    def owns(self, stream_name: str) -> bool:
        return stream_name == self.stream_name

    def own_source_ids(self) -> list[str]:
        return [self.source_id]

    def source_ids(self) -> list[str]:
        return [self.source_id] if self.outlet else []

    def detail(self) -> str:
        port = "emulator" if self.simulated else self.config.options.get("port")
        return f"{port}"


class WebcamRunner(DeviceRunner):
    """A camera (``device`` index), a video ``file``, or the synthetic video."""

    kind = "pc_webcam"

    def __init__(self, config: DeviceConfig, rig: str | None = None) -> None:
        super().__init__(config, rig)
        self.index = int(config.options.get("index") or 1)
        self.stream_name = f"webcam_{self.index}_frames"
        self.source_id = source_id(rig, f"webcam_{self.index}", "frames")
        self.outlet: Any = None

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        from outlets.webcam import OutletError, SyntheticVideo, WebcamOutlet

        opts = self.config.options
        fps = opts.get("fps")
        if self.simulated:
            fps = fps or 30.0
            clock.period = round(clock.period * fps) / fps  # whole frames
            source: Any = SyntheticVideo(
                fps=fps, flash_every=clock.period, flash_frames=2
            )
        else:
            source = opts["device"] if opts.get("device") is not None else opts["file"]
        try:
            place = (
                {"session_dir": session_dir}
                if session_dir is not None
                else {"out_dir": Path.cwd()}
            )
            # a real camera or file starts when the recorder attached: frame 0 is
            # recorded; the synthetic one runs at once (it anchors the pulses)
            wait = 0.0 if self.simulated else clock.consumer_wait
            self.outlet = WebcamOutlet(
                source,
                fps=fps,
                index=self.index,
                source_id=self.source_id,
                wait_consumer=wait,
                **place,
            )
            self.outlet.start()
        except (OutletError, ValueError) as exc:
            self.outlet = None
            raise DeviceError(f"{self.device_id}: {exc}") from None
        if self.simulated and clock.t0 is None:
            deadline = time.monotonic() + FIRST_FRAME_TIMEOUT
            while self.outlet.first_frame_time is None:
                if time.monotonic() > deadline:
                    raise DeviceError(f"{self.device_id}: no frame from the source")
                time.sleep(0.01)
            clock.t0 = self.outlet.first_frame_time  # the pulses follow the flashes

    def stop(self) -> None:
        outlet, self.outlet = self.outlet, None
        if outlet is not None:
            try:
                outlet.stop()  # finalises the mp4 and registers it
            except Exception:
                logger.exception("stopping %s failed", self.device_id)

    def streaming(self) -> bool:
        return self.outlet is not None and self.outlet.running

    def ended(self) -> bool:
        file = self.config.options.get("file")
        return bool(
            file and not self.simulated and self.outlet and not self.streaming()
        )

    def owns(self, stream_name: str) -> bool:
        return stream_name == self.stream_name

    def own_source_ids(self) -> list[str]:
        return [self.source_id]

    def source_ids(self) -> list[str]:
        return [self.outlet.source_id] if self.outlet else []

    def detail(self) -> str:
        opts = self.config.options
        if self.simulated:
            return "synthetic"
        if opts.get("device") is not None:
            return f"device {opts['device']}"
        return Path(opts["file"]).name


class MarkerRunner(DeviceRunner):
    """The stimulus marker outlet; pushes sync pulses when simulated/configured.

    With ``stdin``, every line read from standard input is one marker stamped
    when it is read (type a label and Enter while recording; at most 1024
    characters per marker are kept).
    """

    kind = "markers"

    def __init__(
        self,
        name: str,
        sync_every: float | None,
        simulated: bool,
        *,
        stdin: bool = False,
        rig: str | None = None,
    ) -> None:
        super().__init__(DeviceConfig(name, "markers", simulate=simulated), rig)
        self.name = name
        self.source_id = source_id(rig, "markers", name)
        self.sync_every = sync_every
        self.stdin = stdin
        self.outlet: Any = None
        self.pulser: Any = None

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        from outlets.markers import MarkerOutlet, SyncMarkerPulser

        self.outlet = MarkerOutlet(self.name, source_id=self.source_id)
        period = clock.period if self.simulated else self.sync_every
        if period:
            if clock.t0 is None:
                clock.t0 = pylsl.local_clock() + 1.0
            self.pulser = SyncMarkerPulser(
                self.outlet, clock.t0, period, announce=clock.announce
            ).start()
        if self.stdin:
            threading.Thread(
                target=self._read_stdin,
                args=(clock.consumer_wait,),
                name="markers-stdin",
                daemon=True,
            ).start()

    def _read_stdin(self, consumer_wait: float) -> None:
        outlet = self.outlet
        if outlet is None or not outlet.wait_for_consumers(consumer_wait):
            logger.warning("markers %s: no consumer, reading stdin anyway", self.name)
        for line in sys.stdin:
            outlet = self.outlet
            if outlet is None:
                return
            try:
                outlet.push(line.removesuffix("\n").removesuffix("\r")[:1024])
            except Exception:  # the outlet closed under us at stop
                return

    def stop(self) -> None:
        if self.pulser is not None:
            self.pulser.stop()
            self.pulser = None
        if self.outlet is not None:
            self.outlet.close()
            self.outlet = None

    def streaming(self) -> bool:
        return self.outlet is not None

    def owns(self, stream_name: str) -> bool:
        return stream_name == self.name

    def own_source_ids(self) -> list[str]:
        return [self.source_id]

    def source_ids(self) -> list[str]:
        return [self.outlet.source_id] if self.outlet else []

    def detail(self) -> str:
        return "sync pulses" if self.pulser is not None else "outlet"


#: Clock skews of simulated phones without their own: (offset s, drift ppm), cycled.
PHONE_CLOCKS = [(3600.0, 50.0), (-3600.0, -50.0), (1800.0, 25.0), (-900.0, -35.0)]


class PhoneRunner(DeviceRunner):
    """One phone behind the shared relay (a `PhoneSimulator` when simulated)."""

    kind = "android_phone"

    def __init__(self, config: DeviceConfig, fleet: PhoneFleet, number: int) -> None:
        super().__init__(config, fleet.config.rig)
        self.fleet = fleet
        self.number = number
        self.simulator: Any = None

    def start(self, session_dir: Path | None, clock: SyncClock) -> None:
        clock.listen(self.fleet.flash)  # the lab's sync pulses, with their ids
        if not self.simulated:
            return  # the phone connects by itself
        from outlets.phone.simulator import PhoneSimulator

        opts = self.config.options
        offset, drift = opts.get("clock_offset_s"), opts.get("drift_ppm")
        if not offset and not drift:
            offset, drift = PHONE_CLOCKS[self.number % len(PHONE_CLOCKS)]
        jitter = float(opts.get("jitter_ms", 30.0))
        relay = self.fleet.relay
        cfg = self.fleet.config.relay
        # the phone shows the lab's pulses only, each when the relay says so
        kwargs: dict[str, Any] = {"pulse_interval": None}
        if opts.get("stamp_delay_ms"):  # fault injection (tests), not in configs
            kwargs["stamp_delay"] = {
                k: float(v) / 1e3 for k, v in opts["stamp_delay_ms"].items()
            }
        caps = self.config.capabilities
        if caps:
            kwargs["capabilities"] = tuple(caps)
        self.simulator = PhoneSimulator(
            "127.0.0.1",
            relay.port,
            self.device_id,
            self.config.token,
            clock_offset=offset,
            drift_ppm=drift,
            jitter_ms=(min(1.0, jitter), jitter),
            tls=cfg.certfile is not None,
            cafile=str(cfg.certfile) if cfg.certfile else None,
            auto_reconnect=True,
            seed=self.number,
            **kwargs,
        )
        try:
            self.simulator.start()
        except (OSError, DeviceError) as exc:
            self.simulator = None
            raise DeviceError(f"{self.device_id}: {exc}") from None

    def stop(self) -> None:
        sim, self.simulator = self.simulator, None
        if sim is not None:
            try:
                sim.stop()
            except Exception:
                logger.exception("stopping %s failed", self.device_id)

    def streaming(self) -> bool:
        relay = self.fleet.relay
        if relay is None:
            return False
        dev = relay.devices.get(self.device_id)
        return bool(
            dev is not None
            and dev.conn is not None
            and dev.conn.est.ready
            and dev.outlets is not None
        )

    def owns(self, stream_name: str) -> bool:
        return stream_name.startswith(f"{self.device_id}_")

    def own_source_ids(self) -> list[str]:
        from outlets.phone.protocol import STREAMS

        keys = [*STREAMS, "clock", "clock_exchanges"]
        return [source_id(self.rig, self.device_id, key) for key in keys]

    def source_ids(self) -> list[str]:
        relay = self.fleet.relay
        return [] if relay is None else list(relay.source_ids(self.device_id).values())

    def detail(self) -> str:
        relay = self.fleet.relay
        if relay is None:
            return ""
        dev = relay.devices.get(self.device_id)
        address = dev.address if dev is not None else ""
        return ("simulated " if self.simulated else "") + address


class PhoneFleet:
    """The phone relay (tokens, host, port, TLS from the config) and its phones."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.relay: Any = None
        self.web: Any = None
        self.phones = [
            PhoneRunner(d, self, i)
            for i, d in enumerate(config.devices_of("android_phone"))
        ]

    def start(self, session_dir: Path | None) -> None:
        """Listen; all-simulated fleets listen on loopback, any free port."""
        from outlets.phone.relay import PhoneRelay

        cfg = self.config.relay
        all_simulated = all(p.simulated for p in self.phones)
        host, port = ("127.0.0.1", 0) if all_simulated else (cfg.host, cfg.port)
        context = None
        if cfg.certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(cfg.certfile, cfg.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise DeviceError(f"relay TLS: {cfg.certfile}: {exc}") from None
        self.relay = PhoneRelay(
            host,
            port,
            tokens=self.config.tokens(),
            session=session_dir,
            ssl_context=context,
            heartbeat_timeout=cfg.heartbeat_timeout_s,
            rig=self.config.rig,
        ).start()
        if cfg.web:
            self.web = self._start_web(host, cfg.web_port if port else 0, context)

    def _start_web(self, host: str, port: int, context: Any) -> Any:
        """The phone page (HTTPS + WebSocket): any phone's browser is a phone."""
        from outlets.phone.web import WebFront
        from outlets.phone.web.cert import page_context

        try:
            return WebFront(
                self.relay, host, port, ssl_context=context or page_context()
            ).start()
        except OSError as exc:
            raise DeviceError(f"phone page on {host}:{port}: {exc}") from None

    def pairing_lines(self) -> list[str]:
        """The phone page's pairing URLs and QR codes (empty without ``web``)."""
        if self.web is None:
            return []
        from outlets.phone.web.pairing import pairing_lines

        return pairing_lines(self.web, self.config.tokens())

    def add_observer(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Forward relay events (``file_received``, ``device_ack`` …)."""
        self.relay.add_observer(callback)

    def flash(self, pulse: int, when: float) -> None:
        """Send sync pulse ``pulse`` (at LSL time ``when``) to every phone; no wait."""
        relay = self.relay
        if relay is not None:
            relay.send_sync_pulse(pulse, when)

    def command(self, name: str, session_id: str | None) -> dict[str, dict]:
        """Send ``start_record``/``stop_record`` to every connected phone."""
        if self.relay is None:
            return {}
        if name == "start_record":
            return self.relay.start_record(session_id=session_id)
        return self.relay.stop_record()

    def stop(self) -> None:
        for phone in self.phones:
            phone.stop()
        web, self.web = self.web, None
        if web is not None:
            web.stop()
        relay, self.relay = self.relay, None
        if relay is not None:
            try:
                relay.stop()
            except Exception:
                logger.exception("stopping the phone relay failed")
