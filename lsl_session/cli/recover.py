"""``recover``: repair sessions a crash left unfinished (SPEC §9)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lsl_session.cli._options import json_option, root_option

_EPILOG = """\b
Examples:
  lsl-session recover recordings/pilot_20250731_143022
  lsl-session recover --root recordings --json
"""


def _echo_report(report) -> None:
    if report.nothing_to_do:
        click.echo(f"{report.session_id}: nothing to do ({report.status})")
    else:
        before = report.previous_status or "no metadata"
        click.echo(f"{report.session_id}: {before} -> {report.status}")
    for action in report.actions:
        click.echo(f"  repaired  {action}")
    for name in report.saved:
        click.echo(f"  kept      {name}")
    for problem in report.problems:
        click.echo(f"  problem   {problem}")


@click.command("recover", epilog=_EPILOG)
@click.argument(
    "session_dir", required=False, type=click.Path(file_okay=False, path_type=Path)
)
@root_option
@json_option
def recover_command(session_dir: Path | None, root: Path, as_json: bool) -> None:
    """Repair a crashed session, or every unfinished session under --root.

    Cuts torn XDF tails (kept as <file>.torn-tail), appends missing stream
    footers, repairs the event log, rebuilds missing or corrupt metadata,
    reports missing or changed files and marks the session recovered. Never
    deletes data; running it twice changes nothing the second time.
    """
    from lsl_session.recovery import recover_root, recover_session

    if session_dir is not None:
        reports = [recover_session(session_dir)]
    else:
        reports = recover_root(root)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
        return
    if not reports:
        click.echo(f"no unfinished sessions under {root}")
    for report in reports:
        _echo_report(report)


COMMANDS = [recover_command]
