"""``process`` and ``export``: post-processing of a recorded session (SPEC §8, §12)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from lsl_session.batch import is_processed
from lsl_session.cli import batch as cli_batch
from lsl_session.cli._options import root_option
from lsl_session.cli.batch import batch_options, wants_batch
from lsl_session.cli.bids import bids_options, run_bids
from lsl_session.errors import LslSessionError

logger = logging.getLogger(__name__)

#: Steps whose failure makes the command fail (others are reported as warnings).
_ESSENTIAL = ("load", "synchronized_data", "csv", "matlab", "fif")


class ProcessingError(LslSessionError):
    """Post-processing could not produce its essential outputs."""


def _report(run: dict[str, Any]) -> None:
    for name, step in run["steps"].items():
        status = step["status"]
        line = f"{name:<20} {status:<6} {step.get('duration_s', 0):8.2f} s"
        if status == "error":
            line += f"  {step['error']}"
        click.echo(line)
    for problem in (run["steps"].get("load", {}).get("report") or {}).get(
        "problems", []
    ):
        click.echo(f"warning: {problem}", err=True)
    failed = [n for n in _ESSENTIAL if run["steps"].get(n, {}).get("status") == "error"]
    if failed:
        first = run["steps"][failed[0]]["error"]
        raise ProcessingError(f"{failed[0]} failed: {first}")
    for name, step in run["steps"].items():
        if step["status"] == "error":
            click.echo(f"warning: {name} failed: {step['error']}", err=True)
    verdict = run["steps"].get("report", {}).get("report") or {}
    for line in [verdict.get("verdict"), *verdict.get("notes", [])]:
        if line:
            click.echo(line)


def session_args(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[Path, ...]:
    """Paths as given; an archive URL (``s3://…/<session_id>``) is fetched into the
    local cache first (docs/storage.md) and its cached folder is used."""
    from lsl_session.storage.backends import public_url
    from lsl_session.storage.cache import fetch_session, is_url

    out = []
    for value in values:
        if is_url(value):
            click.echo(f"fetching {public_url(value)} into the local cache …", err=True)
            out.append(fetch_session(value))
        else:
            out.append(Path(value))
    return tuple(out)


def _open(session_dir: Path, root: Path):
    """The session at ``session_dir``; an XDF file is imported under ``root`` first."""
    from lsl_session.importer import session_for
    from lsl_session.session import Session

    return Session(session_for(session_dir, root))


@click.command(
    "process",
    epilog="\b\nExamples:\n  lsl-session process recordings/pilot_20250731_143022\n"
    "  lsl-session process SESSION_DIR --rate 250 --no-hand-segmentation\n"
    "  lsl-session process sub-P001_task-rest_eeg.xdf --root data\n"
    "  lsl-session process --root recordings --jobs 4     # every unprocessed session\n"
    "  lsl-session process --root /data/study --scheduler tcp://head:8786",
)
@click.argument("session_dir", nargs=-1, callback=session_args)
@root_option
@click.option("--rate", type=float, default=None, help="Aligned grid rate in Hz.")
@click.option(
    "--no-hand-segmentation", is_flag=True, help="Skip the hand segmentation processor."
)
@click.option(
    "--phone-clock",
    type=click.Choice(["remap", "live"]),
    default="remap",
    show_default=True,
    help="Phone streams: re-map from the recorded clock exchanges over the whole "
    "session, or keep the relay's live stamps.",
)
@click.option(
    "--register-thermal", is_flag=True,
    help="Write thermal videos registered to the RGB view (needs an RGB↔thermal "
    "calibration, see `lsl-session calibrate`).",
)  # fmt: skip
@click.option(
    "--register-depth", type=click.FloatRange(50, 100000), default=600.0,
    show_default=True, help="Scene depth (mm) assumed for thermal registration.",
)  # fmt: skip
@batch_options
def process_command(
    session_dir: tuple[Path, ...], root: Path, rate: float | None,
    no_hand_segmentation: bool, phone_clock: str, register_thermal: bool,
    register_depth: float, all_: bool, jobs: int, scheduler: str | None,
) -> None:  # fmt: skip
    """Load, synchronize and export a session; run the processors.

    SESSION_DIR may be an .xdf file (LabRecorder's or ours): it is imported as a
    session under --root first (see `lsl-session import`). Last stdout line: the
    session folder.

    Without SESSION_DIR (or with several, or --jobs/--scheduler/--all) every
    session under --root (or named) not yet processed is processed (--all: every
    one), in --jobs local processes or on a Dask --scheduler; the exit code is
    the number of sessions that failed.
    """
    from lsl_session.processing.pipeline import process_session

    if wants_batch(session_dir, all_, jobs, scheduler):
        options = {"rate": rate, "hand_segmentation": not no_hand_segmentation,
                   "phone_clock": phone_clock, "register_thermal": register_thermal,
                   "options": {"register_depth_mm": register_depth}}  # fmt: skip
        return cli_batch.run("process", session_dir, root, all_=all_, jobs=jobs,
                             scheduler=scheduler, options=options,
                             done=is_processed, what="process")  # fmt: skip
    session = _open(session_dir[0], root)
    try:
        run = process_session(
            session,
            rate=rate,
            hand_segmentation=not no_hand_segmentation,
            phone_clock=phone_clock,
            register_thermal=register_thermal,
            options={"register_depth_mm": register_depth},
        )
    finally:
        session.close()
    _report(run)
    click.echo(str(session.root))


@click.command(
    "export",
    epilog="\b\nExamples:\n  lsl-session export SESSION_DIR            # CSV, MAT and FIF\n"
    "  lsl-session export SESSION_DIR --fif\n"
    "  lsl-session export recording.xdf --mat --mat-version 7.3\n"
    "  lsl-session export SESSION_DIR --bids study_bids\n"
    "  lsl-session export --root recordings --bids study_bids --jobs 4",
)
@click.argument("session_dir", nargs=-1, callback=session_args)
@root_option
@click.option("--csv", "csv", is_flag=True, help="exports/csv/ (one CSV per stream).")
@click.option("--mat", "mat", is_flag=True, help="exports/matlab/<session_id>.mat.")
@click.option("--fif", "fif", is_flag=True, help="exports/<session_id>_raw.fif (MNE).")
@click.option(
    "--mat-version",
    type=click.Choice(["auto", "5", "7.3"]),
    default="auto",
    show_default=True,
    help="MAT-file format: v5 (scipy), v7.3 (HDF5), or auto (v7.3 above 2 GB).",
)
@bids_options
@batch_options
def export_command(
    session_dir: tuple[Path, ...], root: Path, csv: bool, mat: bool, fif: bool,
    mat_version: str, bids: Path | None, all_: bool, jobs: int,
    scheduler: str | None, **bids_opts: Any,
) -> None:  # fmt: skip
    """Write exports; without flags, all of them.

    SESSION_DIR may be an .xdf file: it is imported under --root first. Last
    stdout line: the session folder.

    --bids DIR writes (or extends) a BIDS dataset from SESSION_DIR (a session or
    an .xdf file), from several, or from every session under --root not yet in
    it (--all: every one).
    """
    from lsl_session.processing.pipeline import export_session

    if bids is not None:
        return run_bids(session_dir, bids, root, all_=all_, jobs=jobs,
                        scheduler=scheduler, **bids_opts)  # fmt: skip
    if len(session_dir) != 1 or all_ or scheduler or jobs > 1:
        raise click.UsageError(
            "give one SESSION_DIR (--all, --jobs and --scheduler need --bids)"
        )
    if not (csv or mat or fif):
        csv = mat = fif = True
    session = _open(session_dir[0], root)
    try:
        run = export_session(
            session, csv=csv, mat=mat, fif=fif, mat_version=mat_version
        )
    finally:
        session.close()
    _report(run)
    click.echo(str(session.root))


COMMANDS = [process_command, export_command]
