"""``demo``: the whole pipeline on simulated devices (SPEC §13)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from lsl_session.cli._dashboard import dashboard_config, dashboard_options
from lsl_session.cli._options import root_option

logger = logging.getLogger(__name__)


@click.command(
    "demo",
    epilog="\b\nExamples:\n  lsl-session demo\n  lsl-session demo --duration 60 --phones 4",
)
@root_option
@click.option(
    "--duration",
    type=click.FloatRange(min=2),
    default=20.0,
    show_default=True,
    help="Seconds to record.",
)
@click.option(
    "--phones",
    type=click.IntRange(0, 16),
    default=2,
    show_default=True,
    help="Simulated phones (through the real relay).",
)
@dashboard_options
def demo_command(
    root: Path,
    duration: float,
    phones: int,
    dashboard: bool,
    dashboard_host: str,
    dashboard_port: int,
    dashboard_token: str | None,
) -> None:
    """Record simulated phones, a Shimmer3, a webcam and markers; process; summarise.

    The same orchestration as `record --config configs/demo.toml --simulate`:
    phone simulators against the real relay, the Shimmer3 emulator on a pty
    through pyshimmer, a synthetic webcam through OpenCV, sync pulses in all of
    them. The last line of output is the session folder.
    """
    from lsl_session.cli._lab import run_lab
    from lsl_session.lab import LabOptions, demo_config

    run_lab(
        demo_config(phones, duration),
        LabOptions(
            root=root,
            duration=duration,
            status_interval=5.0,
            dashboard=dashboard_config(
                dashboard, dashboard_host, dashboard_port, dashboard_token
            ),
        ),
    )
