"""The ``shimmer`` click command: stream a Shimmer3 GSR+ (or its emulator) to LSL."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import numpy as np

from lsl_session.errors import LslSessionError
from lsl_session.signals import stop_on_signals
from outlets.shimmer.connection import ShimmerError
from outlets.shimmer.emulator import ShimmerEmulator
from outlets.shimmer.outlet import ShimmerOutlet

logger = logging.getLogger(__name__)

_EPILOG = """\b
Examples:
  lsl-session outlet shimmer --port /dev/rfcomm0 --device-id 1
  lsl-session outlet shimmer --emulate --rate 512 --drift-ppm 40 --duration 60
  lsl-session outlet shimmer --emulate --sync-every 5 --session recordings/S001
"""


def _register(session_dir: Path, device_id: str) -> None:
    try:
        from lsl_session.session import Session
    except ImportError:  # pragma: no cover - core package without sessions
        logger.warning("lsl_session.session unavailable; %s not registered", device_id)
        return
    session = Session.open(session_dir)
    try:
        session.add_device(device_id, "shimmer_gsr", ["gsr_data"])
    finally:
        session.close()


@click.command("shimmer", epilog=_EPILOG)
@click.option("--port", metavar="DEVICE", help="Serial device, e.g. /dev/rfcomm0.")
@click.option("--emulate", is_flag=True, help="Use the built-in Shimmer3 emulator.")
@click.option("--rate", type=float, default=128.0, show_default=True, help="Hz.")
@click.option("--device-id", default="1", show_default=True, help="shimmer_<ID>.")
@click.option(
    "--session",
    "session_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Register the device in this session folder.",
)
@click.option(
    "--duration", type=float, help="Stop after SECONDS (default: run until a signal)."
)
@click.option(
    "--clock-offset", type=float, default=0.0, help="Emulator: device clock offset, s."
)
@click.option(
    "--drift-ppm", type=float, default=0.0, help="Emulator: device clock drift."
)
@click.option(
    "--start-counter", type=int, default=0, help="Emulator: initial 24-bit counter."
)
@click.option(
    "--sync-every", type=float, default=0.0, help="Emulator: sync pulse period, s."
)
def shimmer_command(
    port: str | None,
    emulate: bool,
    rate: float,
    device_id: str,
    session_dir: Path | None,
    duration: float | None,
    clock_offset: float,
    drift_ppm: float,
    start_counter: int,
    sync_every: float,
) -> None:
    """Stream a Shimmer3 GSR+ to LSL as shimmer_<ID> (type GSR).

    Runs until SIGINT/SIGTERM or --duration.
    """
    if bool(port) == emulate:
        raise click.UsageError("give exactly one of --port DEVICE or --emulate")
    emulator = None
    if emulate:
        pulses = np.arange(sync_every, 86400.0, sync_every) if sync_every > 0 else ()
        emulator = ShimmerEmulator(
            rate, clock_offset=clock_offset, drift_ppm=drift_ppm,
            start_counter=start_counter, sync_pulse_times=pulses,
        ).start()  # fmt: skip
        port = emulator.port
    outlet = ShimmerOutlet(str(port), device_id=device_id, rate=rate)
    with stop_on_signals() as done:
        try:
            outlet.start()
            if session_dir is not None:
                _register(session_dir, outlet.stream_name)
            click.echo(
                f"streaming {outlet.stream_name} ({outlet.source_id}) from {port}"
            )
            done.wait(duration)
        except (ShimmerError, LslSessionError) as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
        finally:
            outlet.stop()
            if emulator is not None:
                emulator.close()
    st = outlet.stats
    click.echo(
        f"stopped: {st.packets} samples, {st.lost} lost, {st.connects} connects",
        err=True,
    )
