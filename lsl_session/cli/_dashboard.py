"""``--dashboard`` options and the context that serves the live page while recording."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from lsl_session.config import DashboardConfig


def dashboard_options(fn: Callable) -> Callable:
    """Add ``--dashboard``, ``--dashboard-host``, ``--dashboard-port``, ``--dashboard-token``."""
    options = [
        click.option(
            "--dashboard",
            is_flag=True,
            help="Serve a live dashboard page while recording (prints its URL).",
        ),
        click.option(
            "--dashboard-host",
            default="127.0.0.1",
            show_default=True,
            help="Bind address of the dashboard (non-loopback needs --dashboard-token).",
        ),
        click.option(
            "--dashboard-port",
            type=click.IntRange(0, 65535),
            default=8765,
            show_default=True,
            help="Port of the dashboard (0 picks a free one).",
        ),
        click.option(
            "--dashboard-token",
            default=None,
            help="Token required on a non-loopback dashboard (part of the URL).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@contextlib.contextmanager
def serve_dashboard(
    manager: Any, *, enabled: bool, host: str, port: int, token: str | None
) -> Iterator[Any]:
    """Serve the dashboard of ``manager``'s recordings for the duration of the block."""
    if not enabled:
        yield None
        return
    from lsl_session.dashboard.server import serve_recordings

    with serve_recordings(
        manager, host=host, port=port, token=token,
        say=lambda line: click.echo(line, err=True),
    ) as server:  # fmt: skip
        yield server


def dashboard_config(
    enabled: bool, host: str, port: int, token: str | None
) -> DashboardConfig | None:
    """The command line's dashboard choice (None: the config file decides)."""
    if not enabled:
        return None
    from lsl_session.config import DashboardConfig

    return DashboardConfig(enabled=True, host=host, port=port, token=token)
