"""A simulated lab: phones through the real relay, a Shimmer3 emulator through the real
pyshimmer driver, a synthetic webcam through OpenCV and a stimulus marker stream, all
receiving the same sync pulse every few seconds (SPEC §13).

The pulse schedule is anchored on the webcam's first frame (frames are paced at
``k / fps`` after it), so every device pulses at ``t0 + k * period`` on the LSL clock and
the marker stream carries a ``sync_pulse`` marker stamped with that exact time: the
reference the sync check compares every device against.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import click
import numpy as np
import pylsl

from lsl_session.errors import DeviceError
from lsl_session.signals import stop_on_signals

logger = logging.getLogger(__name__)

#: Clock skews of the simulated phones: (offset s, drift ppm), cycled.
PHONE_CLOCKS = [(3600.0, 50.0), (-3600.0, -50.0), (1800.0, 25.0), (-900.0, -35.0)]


class SimulatedLab:
    """Start and stop a set of simulated devices that share one sync-pulse schedule.

    Parameters
    ----------
    phones : int
        Number of simulated phones (``phone_1`` …) connected to a local relay.
    shimmer, webcam, markers : bool
        Which other devices to run.
    session_dir : Path | None
        Session the devices register in (uploads, webcam video, devices).
    sync_every : float
        Seconds between sync pulses (a whole number of webcam frames).
    fps : float
        Webcam frame rate.
    """

    def __init__(
        self,
        *,
        phones: int = 2,
        shimmer: bool = True,
        webcam: bool = True,
        markers: bool = True,
        session_dir: Path | None = None,
        sync_every: float = 4.0,
        fps: float = 30.0,
        shimmer_rate: float = 128.0,
    ) -> None:
        if phones < 0 or phones > 64:
            raise DeviceError(f"phones must be between 0 and 64, got {phones}")
        self.n_phones = phones
        self.use_shimmer, self.use_webcam, self.use_markers = shimmer, webcam, markers
        self.session_dir = session_dir
        self.fps = fps
        self.sync_every = round(sync_every * fps) / fps
        self.shimmer_rate = shimmer_rate
        self.t0: float | None = None
        self.webcam = None
        self.markers = None
        self.emulator = None
        self.shimmer = None
        self.relay = None
        self.phones: list = []
        self._stop = threading.Event()
        self._pulser = None

    # ----------------------------------------------------------------- start
    def start(self) -> SimulatedLab:
        """Start every device; returns once all of them are streaming."""
        try:
            self._start_webcam()
            if self.t0 is None:
                self.t0 = pylsl.local_clock() + 1.0
            self._start_markers()
            self._start_shimmer()
            self._start_phones()
        except BaseException:
            self.stop()
            raise
        return self

    def pulse_times(self, until: float) -> np.ndarray:
        """LSL times of the sync pulses from the first one up to ``until``."""
        n = int(max(0.0, until - self.t0) // self.sync_every)
        return self.t0 + self.sync_every * np.arange(1, n + 1)

    def _start_webcam(self) -> None:
        if not self.use_webcam:
            return
        from outlets.webcam.outlet import WebcamOutlet
        from outlets.webcam.synthetic import SyntheticVideo

        video = SyntheticVideo(
            fps=self.fps, flash_every=self.sync_every, flash_frames=2
        )
        kwargs = (
            {"session_dir": self.session_dir}
            if self.session_dir
            else {"out_dir": Path.cwd()}
        )
        self.webcam = WebcamOutlet(video, fps=self.fps, index=1, **kwargs).start()
        deadline = time.monotonic() + 10
        while self.webcam.first_frame_time is None:
            if time.monotonic() > deadline:
                raise DeviceError("the synthetic webcam produced no frame")
            time.sleep(0.01)
        self.t0 = self.webcam.first_frame_time

    def _start_markers(self) -> None:
        if not self.use_markers:
            return
        from outlets.markers import MarkerOutlet, SyncMarkerPulser

        self.markers = MarkerOutlet("StimulusMarkers")
        self._pulser = SyncMarkerPulser(self.markers, self.t0, self.sync_every).start()

    def _start_shimmer(self) -> None:
        if not self.use_shimmer:
            return
        from outlets.shimmer.emulator import ShimmerEmulator
        from outlets.shimmer.outlet import ShimmerOutlet

        self.emulator = ShimmerEmulator(
            rate=self.shimmer_rate, clock_offset=12.5, drift_ppm=40.0, seed=7
        ).start()
        self.shimmer = ShimmerOutlet(
            self.emulator.port, device_id="1", rate=self.shimmer_rate
        ).start()
        self.emulator.schedule_sync_pulses(self.pulse_times(self.t0 + 24 * 3600))
        if self.session_dir is not None:
            from lsl_session.session import Session

            session = Session.open(self.session_dir)
            session.add_device(self.shimmer.stream_name, "shimmer_gsr", ["gsr_data"])
            session.close()

    def _start_phones(self) -> None:
        if not self.n_phones:
            return
        from outlets.phone.relay import PhoneRelay
        from outlets.phone.simulator import PhoneSimulator

        ids = [f"phone_{i + 1}" for i in range(self.n_phones)]
        tokens = {d: f"token-{d}" for d in ids}
        self.relay = PhoneRelay(
            "127.0.0.1", 0, tokens=tokens, session=self.session_dir
        ).start()
        for i, device_id in enumerate(ids):
            offset, drift = PHONE_CLOCKS[i % len(PHONE_CLOCKS)]
            phone = PhoneSimulator(
                "127.0.0.1",
                self.relay.port,
                device_id,
                tokens[device_id],
                clock_offset=offset,
                drift_ppm=drift,
                jitter_ms=(1.0, 30.0),
                pulse_interval=self.sync_every,
                pulse_start=self.t0 + self.sync_every,
                seed=i,
            )
            self.phones.append(phone.start())
        for device_id in ids:
            if not self.relay.wait_ready(device_id, timeout=15.0):
                raise DeviceError(f"simulated {device_id} did not connect to the relay")

    # ------------------------------------------------------------- commands
    def source_ids(self) -> list[str]:
        """The source_ids of every simulated stream (for recorder queries)."""
        ids = []
        if self.webcam is not None:
            ids.append(self.webcam.source_id)
        if self.markers is not None:
            ids.append(self.markers.source_id)
        if self.shimmer is not None:
            ids.append(self.shimmer.source_id)
        if self.relay is not None:
            for phone in self.phones:
                ids.extend(self.relay.source_ids(phone.device_id).values())
        return ids

    def start_record(self, session_id: str | None = None) -> dict:
        """Tell the phones to start recording (acks returned)."""
        return self.relay.start_record(session_id=session_id) if self.relay else {}

    def stop_record(self, upload_timeout: float = 20.0) -> dict:
        """Tell the phones to stop; wait until their uploads are stored."""
        if self.relay is None:
            return {}
        acks = self.relay.stop_record()
        deadline = time.monotonic() + upload_timeout
        while time.monotonic() < deadline:
            if all(p.uploads_done() for p in self.phones):
                break
            time.sleep(0.1)
        else:
            logger.warning("phone uploads did not finish within %.0f s", upload_timeout)
        return acks

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop every device (webcam video finalised and registered); idempotent."""
        self._stop.set()
        if self._pulser is not None:
            self._pulser.stop()
            self._pulser = None
        for phone in self.phones:
            phone.stop()
        self.phones = []
        for name in ("relay", "shimmer", "emulator", "webcam", "markers"):
            device = getattr(self, name)
            if device is None:
                continue
            try:
                if name == "emulator":
                    device.close()
                else:
                    device.stop()
            except Exception:
                logger.exception("stopping %s failed", name)
            setattr(self, name, None)


@click.command("simulate")
@click.option("--phones", type=click.IntRange(0, 64), default=2, show_default=True)
@click.option("--no-shimmer", is_flag=True, help="No Shimmer3 emulator.")
@click.option("--no-webcam", is_flag=True, help="No synthetic webcam.")
@click.option("--no-markers", is_flag=True, help="No stimulus marker stream.")
@click.option(
    "--session",
    "session_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Register devices, uploads and the video in this session.",
)
@click.option(
    "--sync-every", type=click.FloatRange(min=0.5), default=4.0, show_default=True
)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None)
def simulate_command(
    phones: int,
    no_shimmer: bool,
    no_webcam: bool,
    no_markers: bool,
    session_dir: Path | None,
    sync_every: float,
    duration: float | None,
) -> None:
    """Start simulated devices (phones, Shimmer, webcam, markers) until Ctrl-C."""
    with stop_on_signals() as done:
        lab = SimulatedLab(
            phones=phones,
            shimmer=not no_shimmer,
            webcam=not no_webcam,
            markers=not no_markers,
            session_dir=session_dir,
            sync_every=sync_every,
        ).start()
        try:
            click.echo(f"simulating: {', '.join(lab.source_ids())}", err=True)
            lab.start_record()
            done.wait(duration)
            lab.stop_record()
        finally:
            lab.stop()
