"""``report``: (re)generate a session's ``processing/report.html``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(
    "report",
    epilog="\b\nExamples:\n  lsl-session report recordings/pilot_20250731_143022",
)
@click.argument("session_dir", type=click.Path(path_type=Path))
def report_command(session_dir: Path) -> None:
    """Write a session's HTML report with plots; print its path last.

    The report (processing/report.html) is one self-contained file: stream
    overviews, rates and gaps, clock offsets with their fit, the sync check, the
    event timeline, and devices and files with their sha256 status.
    """
    from lsl_session.report import write_report
    from lsl_session.session import Session

    session = Session(session_dir)
    try:
        result = write_report(session.root)
    finally:
        session.close()
    for line in [result["verdict"], *result["notes"]]:
        click.echo(line, err=True)
    click.echo(str(session.root / result["outputs"][0]))
