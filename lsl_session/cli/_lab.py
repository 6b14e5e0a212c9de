"""CLI glue of the lab orchestration, shared by ``record --config`` and ``demo``."""

from __future__ import annotations

import time

import click

from lsl_session.config import SessionConfig
from lsl_session.errors import LslSessionError
from lsl_session.lab import LabOptions, LabRun
from lsl_session.lab.summary import print_summary
from lsl_session.report.verdict import read_verdict
from lsl_session.signals import stop_on_signals


def run_lab(
    config: SessionConfig, options: LabOptions, *, allow_missing: bool = False
) -> None:
    """Run a lab config; print the summary and, last, the session folder.

    Exits 2 when a required device was missing at the start or a device could
    not be started (unless ``allow_missing``), like a missing LabRecorder
    ``RequiredStreams`` entry: a typo in a port never ends in exit code 0.

    Raises
    ------
    click.ClickException
        One line, when the session cannot be created or opened.
    """
    started = time.monotonic()
    lab = LabRun(config, options, say=lambda line: click.echo(line, err=True))
    # Ctrl-C / SIGTERM end the recording early but cleanly (footers, uploads)
    with stop_on_signals() as stopper:
        try:
            result = lab.run(stopper)
        except LslSessionError as exc:
            raise click.ClickException(str(exc)) from None
    if result.stopped_by and result.stopped_by != "stop":
        click.echo(f"{result.stopped_by}: stopped early", err=True)
    if result.folder is not None:
        print_summary(result.folder, result.summary, result.metadata)
        click.echo("")
        if (result.metadata or {}).get("status") == "empty":
            from lsl_session.manager import EMPTY_LINE

            click.echo(EMPTY_LINE)
        else:
            for line in read_verdict(result.folder, result.summary):
                click.echo(line)
    click.echo(f"total {time.monotonic() - started:.1f} s", err=True)
    if result.missing_uploads:
        click.echo(
            "missing uploads: "
            + "; ".join(
                f"{d}: {', '.join(t)}" for d, t in result.missing_uploads.items()
            ),
            err=True,
        )
    for query in result.summary.get("unmatched_queries") or []:
        click.echo(
            f"query {query!r} never matched any stream: nothing recorded from it",
            err=True,
        )
    for error in result.failed_devices.values():
        click.echo(f"did not start: {error}", err=True)
    click.echo(str(result.folder))
    if (result.missing_devices or result.failed_devices) and not allow_missing:
        raise SystemExit(2)
