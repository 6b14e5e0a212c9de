"""``outlet simulate``: the demo's simulated devices, without recording (SPEC §12).

Phones through the real relay, a Shimmer3 emulator through the real pyshimmer
driver, a synthetic webcam through OpenCV and a stimulus marker stream, all pulsing
together. The devices are the lab orchestration's own runners
(`lsl_session.lab.devices`) on the demo config, so this is the demo's code path.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from lsl_session.errors import DeviceError
from lsl_session.signals import stop_on_signals

logger = logging.getLogger(__name__)

#: Seconds the simulated devices get to stream before the command gives up.
START_TIMEOUT = 20.0


@click.command(
    "simulate",
    epilog="\b\nExamples:\n  lsl-session outlet simulate --phones 1 --no-webcam\n"
    "  lsl-session outlet simulate --session recordings/pilot_20250731_143022",
)
@click.option(
    "--phones",
    type=click.IntRange(0, 64),
    default=2,
    show_default=True,
    help="Simulated phones (each through a real relay).",
)
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
    "--sync-every",
    type=click.FloatRange(min=0.5),
    default=4.0,
    show_default=True,
    help="Seconds between sync pulses injected into every device.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds (default: until Ctrl-C).",
)
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
    from lsl_session.lab import demo_config
    from lsl_session.lab.devices import SyncClock
    from lsl_session.lab.run import build_devices

    config = demo_config(
        phones, shimmer=not no_shimmer, webcam=not no_webcam, markers=not no_markers
    )
    devices, fleet = build_devices(config)
    clock = SyncClock(period=sync_every)
    with stop_on_signals() as done:
        try:
            if fleet.phones:
                fleet.start(session_dir)
            for dev in devices:
                dev.start(session_dir, clock)
            deadline = time.monotonic() + START_TIMEOUT
            while not all(d.streaming() for d in devices):
                if time.monotonic() > deadline or done.wait(0.05):
                    late = [d.device_id for d in devices if not d.streaming()]
                    raise DeviceError(f"not streaming: {', '.join(late)}")
            ids = [sid for d in devices for sid in d.source_ids()]
            click.echo(f"simulating: {', '.join(ids)}", err=True)
            fleet.command("start_record", None)
            done.wait(duration)
            fleet.command("stop_record", None)
        except DeviceError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            for dev in devices:
                dev.stop()
            fleet.stop()
