"""The one orchestration: config → devices → session → record → stop → process.

`LabRun` is what ``lsl-session record --config FILE`` and ``lsl-session demo``
run; the demo is a config whose devices are all simulated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsl_session.config import DashboardConfig, SessionConfig
from lsl_session.errors import LslSessionError
from lsl_session.lab.devices import (
    DeviceRunner,
    MarkerRunner,
    PhoneFleet,
    ShimmerRunner,
    SyncClock,
    WebcamRunner,
)
from lsl_session.lab.status import device_rows, device_table, plain_lines
from lsl_session.lab.uploads import UploadTracker
from lsl_session.lifecycle import State
from lsl_session.signals import StopRequest

logger = logging.getLogger(__name__)


@dataclass
class LabOptions:
    """How to run a lab config (the command-line side)."""

    root: Path = Path("recordings")
    name: str | None = None
    session_dir: Path | None = None
    duration: float | None = None
    process: bool = True
    status_interval: float = 5.0
    extra_queries: list[str] = field(default_factory=list)
    recorder_options: dict[str, Any] = field(default_factory=dict)
    live: bool | None = None
    dashboard: DashboardConfig | None = None
    #: ``(host, port, token)`` of a control socket whose ``stop`` ends the run
    control: tuple[str, int, str | None] | None = None


@dataclass
class LabResult:
    """What a run produced."""

    folder: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    acks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    missing_devices: list[str] = field(default_factory=list)
    failed_devices: dict[str, str] = field(default_factory=dict)
    missing_uploads: dict[str, list[str]] = field(default_factory=dict)
    stopped_by: str | None = None


def build_devices(config: SessionConfig) -> tuple[list[DeviceRunner], PhoneFleet]:
    """The runners of a config, in start order (webcams anchor the sync clock).

    Devices with a ``host`` run on other computers (their agents, see
    `lsl_session.agents`); only this machine's are built here.
    """
    any_simulated = any(d.simulate for d in config.devices)
    config = dataclasses.replace(
        config, devices=tuple(d for d in config.devices if not d.host)
    )
    fleet = PhoneFleet(config)
    rig = config.rig
    devices: list[DeviceRunner] = [
        WebcamRunner(d, rig) for d in config.devices_of("pc_webcam")
    ]
    if config.markers is not None:
        devices.append(
            MarkerRunner(
                config.markers.name,
                config.markers.sync_every_s,
                simulated=any_simulated and config.markers.sync_every_s is None,
                stdin=config.markers.stdin,
                rig=rig,
            )
        )
    devices += [ShimmerRunner(d, rig) for d in config.devices_of("shimmer_gsr")]
    devices += fleet.phones
    return devices, fleet


class LabRun:
    """Run one lab config from session creation to processing.

    Parameters
    ----------
    config : SessionConfig
        The validated config.
    options : LabOptions
        Command-line choices (root, duration, existing session, …).
    say : callable
        Writes one line of user output (stderr in the CLI).
    """

    def __init__(
        self,
        config: SessionConfig,
        options: LabOptions,
        say: Callable[[str], None],
    ) -> None:
        self.config = config
        self.options = options
        self.say = say
        self.devices, self.fleet = build_devices(config)
        self.hub: Any = None
        if config.hosts():
            from lsl_session.agents.hub import AgentHub
            from lsl_session.agents.remote import remote_runners

            self.hub = AgentHub(config, say)
            self.devices += remote_runners(self.hub)
        # the recorder starts at most wait_s after the devices: nothing they
        # stream before it attached is lost (held until it has consumers)
        self.clock = SyncClock(
            period=config.sync_every_s, consumer_wait=config.wait_s + 10.0
        )
        self.tracker = UploadTracker()
        self.manager: Any = None
        self._was_streaming: dict[str, bool] = {}
        self._connections: dict[str, int] = {}
        self._live: Any = None
        self._last_status: dict[str, Any] | None = None
        self._joined: list[str] = []
        self._recording_id: str | None = None

    # ------------------------------------------------------------------ run
    def run(self, stopper: StopRequest) -> LabResult:
        """Create/open the session, start devices, record, stop, process.

        Required devices still missing after ``wait_s`` are named, logged as an
        ``error`` event and listed in `LabResult.missing_devices`; the others
        are recorded (the CLI exits 2 for it unless ``--allow-missing``).
        """
        from lsl_session.manager import SessionManager

        opts = self.options
        self.manager = manager = SessionManager(
            self.config.root or opts.root, rig=self.config.rig
        )
        if opts.session_dir is not None:
            manager.open_session(opts.session_dir)
        else:
            manager.create_session(opts.name or self.config.name)
        result = LabResult(folder=manager.session_dir)
        try:
            self.say(f"rig {self.config.rig}")
            self.say(f"session {manager.session_dir}")
            self._register_devices()
            self._start_devices()
            with self._dashboard(), self._control(stopper), self._display():
                result.missing_devices = self._wait_for_devices(stopper)
                self._record(stopper, result)
        except BaseException:
            self._shutdown()
            manager.close()
            raise
        self._shutdown()
        result.failed_devices = {d.device_id: d.error for d in self.devices if d.error}
        result.stopped_by = stopper.signal_name or (
            "stop" if stopper.is_set() else None
        )
        process = self.config.process and opts.process
        try:
            if manager.state is State.ACTIVE:
                if process:
                    self.say("processing …")
                result.metadata = manager.end_session(process=process)
        finally:
            manager.close()
        return result

    @contextlib.contextmanager
    def _control(self, stopper: StopRequest) -> Iterator[None]:
        """The LabRecorder control socket: a remote ``stop`` ends the run."""
        if self.options.control is None:
            yield
            return
        from lsl_session.control import ControlServer
        from lsl_session.lab.control import LabControl

        host, port, token = self.options.control
        server = ControlServer(self.manager, host=host, port=port, token=token)
        server.handler = LabControl(stopper.set, self._control_status)
        server.start()
        self.say(
            f"remote control on {host}:{server.address[1]} (stop ends the recording)"
        )
        try:
            yield
        finally:
            server.stop()

    def _control_status(self) -> dict[str, Any]:
        manager = self.manager
        recorder = manager.recorder if manager else None
        return {
            "state": manager.state.value if manager else "idle",
            "session": str(manager.session_dir) if manager else None,
            "devices": self._rows(),
            "recorder": recorder.status() if recorder is not None else None,
        }

    def _dashboard(self) -> contextlib.AbstractContextManager:
        """The live dashboard, when the command line or the config asks for it."""
        chosen = self.options.dashboard or self.config.dashboard
        if not chosen.enabled:
            return contextlib.nullcontext()
        from lsl_session.dashboard.server import serve_recordings

        return serve_recordings(
            self.manager, host=chosen.host, port=chosen.port, token=chosen.token,
            say=self.say,
        )  # fmt: skip

    def _shutdown(self) -> None:
        """Stop the recorder first (its tail), then every device."""
        if self.manager.state is State.RECORDING:
            try:
                self.manager.stop_recording()
            except Exception:
                logger.exception("stopping the recorder failed")
        for dev in self.devices:
            dev.stop()
        self.fleet.stop()
        if self.hub is not None:
            if (self.hub.command or {}).get("type") == "start":
                self.hub.stop_agents()  # the run ended early: agents stop too
            self.hub.close()
        self._final_device_status()

    def _final_device_status(self) -> None:
        """Devices still waiting never connected: ``missing``; the others stopped."""
        session = self.manager.session
        try:
            devices = session.metadata().get("devices", {})
            for d in self.devices:
                status = (devices.get(d.device_id) or {}).get("status")
                if status == "waiting":
                    session.set_device_status(d.device_id, "missing")
                elif status == "connected":
                    session.set_device_status(d.device_id, "disconnected")  # stopped
        except Exception:
            logger.exception("recording the devices' final status failed")

    # ------------------------------------------------------------- devices
    def _register_devices(self) -> None:
        session = self.manager.session
        for d in self.config.devices:  # "waiting" until it is seen streaming
            session.add_device(
                d.device_id, d.device_type, list(d.capabilities), status="waiting"
            )

    def _start_devices(self) -> None:
        folder = self.manager.session_dir
        if self.hub is not None:  # agents start their devices while ours start
            self.hub.start(self.manager.session)
            self.hub.begin(
                {
                    "session_id": self.manager.session.session_id,
                    "rig": self.config.rig,
                    "sync_every_s": self.config.sync_every_s,
                    "consumer_wait": self.clock.consumer_wait,
                }
            )
        if self.fleet.phones:
            self.fleet.start(folder)
            self.fleet.add_observer(self.tracker.on_relay_event)
            self.fleet.add_observer(self._on_relay_event)
            relay = self.fleet.relay
            where = f"{relay.host}:{relay.port}{' (TLS)' if relay.ssl_context else ''}"
            self.say(f"phone relay listening on {where}")
            for line in self.fleet.pairing_lines():
                self.say(line)
        for dev in self.devices:
            try:
                dev.start(folder, self.clock)
            except LslSessionError as exc:
                dev.error = str(exc)
                self.say(f"could not start: {exc}")
                self.manager.session.log_event(
                    "error",
                    {
                        "category": "device",
                        "device_id": dev.device_id,
                        "message": str(exc)[:500],
                    },
                )

    def _wait_for_devices(self, stopper: StopRequest) -> list[str]:
        """Wait for required (and simulated) devices; return the missing required."""
        wanted = [d for d in self.devices if d.required or d.simulated]
        deadline = time.monotonic() + self.config.wait_s
        next_table = time.monotonic() + self._interval()
        while not stopper.is_set():
            waiting = [d for d in wanted if not d.error and not d.streaming()]
            if not waiting or time.monotonic() >= deadline:
                break
            if time.monotonic() >= next_table:
                self._show("waiting for devices")
                next_table = time.monotonic() + self._interval()
            stopper.wait(0.05)
        self._show("devices")
        missing = [
            d.device_id for d in self.devices if d.required and not d.streaming()
        ]
        if missing and not stopper.is_set():
            message = (
                f"required device(s) not streaming after {self.config.wait_s:g} s:"
                f" {', '.join(missing)}"
            )
            self.manager.session.log_event(
                "error", {"category": "device", "message": message}
            )
            self.say(f"{message}; recording the others")
        session = self.manager.session
        for d in self.devices:
            self._was_streaming[d.device_id] = d.streaming()
            self._connections[d.device_id] = d.connections()
            if d.kind == "markers":
                continue  # not a registered device
            if d.streaming() or d.ended():
                session.set_device_status(d.device_id, "connected")
            elif not stopper.is_set():
                session.set_device_status(d.device_id, "missing")
        return missing

    # ------------------------------------------------------------ recording
    def queries(self) -> list[str]:
        """What the recorder records: every device's streams plus the config's."""
        out: list[str] = []
        for dev in self.devices:
            out += dev.queries()
        out += list(self.config.streams or [])
        out += list(self.options.extra_queries)
        return list(dict.fromkeys(out))

    def _record(self, stopper: StopRequest, result: LabResult) -> None:
        manager, opts = self.manager, self.options
        if stopper.is_set():
            return
        recorder_options = dict(opts.recorder_options)
        if "timing" not in recorder_options:
            from lsl_session.recorder.stream import RecorderTiming

            recorder_options["timing"] = RecorderTiming(
                offset_interval=self.config.clock_offset_every_s
            )
        if self.config.compress:
            recorder_options.setdefault("compress", True)
        if self.config.split_mb and "split_bytes" not in recorder_options:
            recorder_options["split_bytes"] = self.config.split_mb * 1e6
        # streaming devices are found within a resolve cycle or two; absent ones
        # are picked up later as late streams, not waited for here
        everyone = all(d.streaming() or d.ended() for d in self.devices)
        recorder_options.setdefault("initial_wait", 5.0 if everyone else 2.0)
        manager.start_recording(self.queries(), **recorder_options)
        session_id = manager.session.session_id
        self.say(f"devices up: {len(self.queries())} stream queries")
        from lsl_session.recorder.report import matched_lines

        for line in matched_lines(manager.recorder):
            self.say(line)
        self.say(f"recording into {manager.session_dir}")
        self._recording_id = session_id
        self._joined = []  # connected before: covered by the command below
        acks = self.fleet.command("start_record", session_id)
        result.acks["start_record"] = acks
        self._report_acks("start_record", acks)
        duration = opts.duration or self.config.duration_s
        self._monitor(stopper, duration)
        self._recording_id = None
        acks = self.fleet.command("stop_record", session_id)
        result.acks["stop_record"] = acks
        self._report_acks("stop_record", acks)
        self.tracker.announce(acks)
        if manager.state is State.RECORDING:
            result.summary = manager.stop_recording()
        if self.hub is not None:  # after the recorder's tail: agents stop, deliver
            self.hub.stop_agents()
        result.missing_uploads = self._wait_uploads()
        if self.hub is not None:
            self.say("waiting for the agents' files …")
            result.missing_uploads.update(
                self.hub.collect(self.config.upload_timeout_s)
            )

    def _report_acks(self, command: str, acks: dict[str, dict[str, Any]]) -> None:
        for device_id, ack in sorted(acks.items()):
            status = ack.get("status")
            if status != "ok":
                self.say(f"{device_id}: {command} not acknowledged ({status})")

    def _monitor(self, stopper: StopRequest, duration: float | None) -> None:
        end = None if duration is None else time.monotonic() + duration
        next_table = time.monotonic() + self._interval()
        while not stopper.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                return
            if self.manager.state is not State.RECORDING:
                return  # the recorder failed (disk full …): stop the devices
            self._watch_devices()
            if self.fleet.relay is not None:
                self._start_late_phones()
            if now >= next_table:
                self._show("recording")
                next_table = now + self._interval()
            stopper.wait(0.2 if end is None else min(0.2, max(0.0, end - now)))

    def _on_relay_event(self, entry: dict[str, Any]) -> None:
        # relay thread: only note who (re)connected; the monitor loop commands
        if entry.get("event") == "device_connected":
            self._joined.append(str(entry.get("device_id")))

    def _start_late_phones(self) -> None:
        """A phone that (re)connects during the recording gets ``start_record``."""
        joined, self._joined = self._joined, []
        if joined and self._recording_id is not None:
            acks = self.fleet.relay.start_record(
                sorted(set(joined)), session_id=self._recording_id
            )
            self._report_acks("start_record", acks)

    def _watch_devices(self) -> None:
        """Log drops/returns of non-phone devices (the relay logs the phones).

        A reconnect faster than the poll is still seen: the device's connection
        count moved (`DeviceRunner.connections`).
        """
        for dev in self.devices:
            if dev.kind in ("android_phone", "agent") or dev.error or dev.ended():
                continue
            now, count = dev.streaming(), dev.connections()
            before = self._was_streaming.get(dev.device_id, now)
            seen = self._connections.get(dev.device_id, count)
            if before and (not now or count > seen):
                self._log_device("device_disconnected", dev.device_id)
                before = False
            if now and not before:
                self._log_device("device_connected", dev.device_id)
            self._was_streaming[dev.device_id] = now
            self._connections[dev.device_id] = count

    def _log_device(self, event: str, device_id: str) -> None:
        self.say(f"{device_id}: {event.removeprefix('device_')}")
        details: dict[str, Any] = {"device_id": device_id}
        if event == "device_connected":
            details["reconnect"] = True  # the same outlet: the streams continue
        self.manager.session.log_event(event, details)
        self.manager.session.set_device_status(device_id, event.removeprefix("device_"))

    def _wait_uploads(self) -> dict[str, list[str]]:
        total = self.tracker.expected_count()
        if not total:
            return {}

        def progress(done: int, of: int) -> None:
            self.say(f"uploads {done}/{of}")

        missing = self.tracker.wait(self.config.upload_timeout_s, progress=progress)
        for device_id, types in missing.items():
            message = (
                f"announced upload(s) {', '.join(types)} not received within"
                f" {self.config.upload_timeout_s:g} s"
            )
            self.say(f"{device_id}: {message}")
            self.manager.session.log_event(
                "error",
                {"category": "device", "device_id": device_id, "message": message},
            )
        return missing

    # --------------------------------------------------------------- output
    @contextlib.contextmanager
    def _display(self) -> Iterator[None]:
        """A live-updating device table on a terminal; plain lines otherwise."""
        live = self.options.live
        if live is None:
            live = sys.stderr.isatty()
        if not live:
            yield
            return
        from rich.console import Console
        from rich.live import Live

        with Live(
            console=Console(stderr=True), refresh_per_second=2, transient=False
        ) as self._live:
            try:
                yield
            finally:
                self._show("devices")
                self._live = None

    def _interval(self) -> float:
        return 0.5 if self._live is not None else self.options.status_interval

    def _rows(self) -> list[dict[str, Any]]:
        recorder = self.manager.recorder if self.manager else None
        if recorder is not None:  # after the stop: the last figures recorded
            self._last_status = recorder.status()
        return device_rows(self.devices, self._last_status)

    def _show(self, header: str) -> None:
        rows = self._rows()
        if self._live is not None:
            self._live.update(device_table(rows, header))
        else:
            for line in plain_lines(rows, header):
                self.say(line)
