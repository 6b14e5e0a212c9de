"""``demo``: the whole pipeline on simulated devices (SPEC §13)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click

from lsl_session.cli._options import root_option
from lsl_session.lifecycle import State
from lsl_session.signals import StopRequest, stop_on_signals

logger = logging.getLogger(__name__)


def _tree(folder: Path, max_files: int = 6) -> list[str]:
    """A compact tree of the session folder (files per folder capped)."""
    lines = [f"{folder.name}/"]

    def walk(path: Path, prefix: str) -> None:
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        dirs = [p for p in entries if p.is_dir()]
        files = [p for p in entries if p.is_file()]
        shown = files[:max_files]
        for f in shown:
            lines.append(f"{prefix}{f.name}  ({f.stat().st_size / 1e6:.2f} MB)")
        if len(files) > len(shown):
            lines.append(f"{prefix}… {len(files) - len(shown)} more files")
        for d in dirs:
            lines.append(f"{prefix}{d.name}/")
            walk(d, prefix + "  ")

    walk(folder, "  ")
    return lines


def _sync_table(report: dict) -> list[str]:
    rows = [
        f"  {'stream':<26} {'kind':<7} {'pulses':>7} {'median ms':>10} {'max ms':>8}"
        f" {'period ms':>10}  aligned"
    ]
    for r in report.get("streams", []):
        med = r.get("median_error_ms")
        mx = r.get("max_error_ms")
        rows.append(
            f"  {r['stream']:<26} {r.get('kind', ''):<7}"
            f" {r.get('n_matched', 0):>3}/{r.get('n_reference', 0):<3}"
            f" {'-' if med is None else f'{med:.2f}':>10}"
            f" {'-' if mx is None else f'{mx:.2f}':>8}"
            f" {r.get('sample_period_ms') or 0:>10.2f}"
            f"  {'yes' if r.get('within_one_sample') else 'NO'}"
        )
    return rows


@click.command(
    "demo",
    epilog="Examples:\n\n\b\n  lsl-session demo\n  lsl-session demo --duration 60 --phones 4",
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
def demo_command(root: Path, duration: float, phones: int) -> None:
    """Record simulated phones, a Shimmer3, a webcam and markers; process; summarise.

    The last line of output is the session folder.
    """
    from lsl_session.manager import SessionManager
    from outlets.simulate import SimulatedLab

    started = time.monotonic()
    manager = SessionManager(root)
    manager.create_session("demo")
    folder = manager.session_dir
    click.echo(f"session {folder}", err=True)
    lab = SimulatedLab(phones=phones, session_dir=folder)
    # Ctrl-C / SIGTERM end the recording early but cleanly (footers, uploads)
    with stop_on_signals() as stopper:
        try:
            lab.start()
            click.echo(f"devices up: {len(lab.source_ids())} streams", err=True)
            manager.start_recording(
                [f"source_id='{sid}'" for sid in lab.source_ids()], initial_wait=5.0
            )
            lab.start_record(manager.session.session_id)
            _record_for(duration, stopper)
            lab.stop_record()
            summary = manager.stop_recording()
        finally:
            lab.stop()
            if manager.state is State.RECORDING:
                manager.stop_recording()
        if stopper.signal_name:
            click.echo(f"{stopper.signal_name}: stopped early", err=True)
        try:
            click.echo("processing …", err=True)
            meta = manager.end_session()
        finally:
            manager.close()
    _print_summary(folder, summary, meta)
    click.echo(f"total {time.monotonic() - started:.1f} s", err=True)
    click.echo(str(folder))


def _record_for(duration: float, stopper: StopRequest) -> None:
    """Show progress for ``duration`` seconds, or until a stop is requested."""
    end = time.monotonic() + duration
    with click.progressbar(length=int(duration), label="recording") as bar:
        while (left := end - time.monotonic()) > 0:
            if stopper.wait(min(1.0, left)):
                return
            bar.update(1)


def _print_summary(folder: Path, summary: dict, meta: dict) -> None:
    import json

    click.echo("\nSession tree")
    for line in _tree(folder):
        click.echo(f"  {line}")
    click.echo("\nStreams")
    for s in sorted(summary.get("streams", []), key=lambda s: s["name"]):
        click.echo(
            f"  [{s['stream_id']:>2}] {s['name']:<28} {s['type']:<14}"
            f" {s['sample_count']:>7} samples  {s['clock_offsets']} offsets"
        )
    report_path = folder / "processing" / "sync_check" / "sync_check.json"
    click.echo("\nSync check (alignment error vs the sync_pulse markers)")
    if report_path.exists():
        for line in _sync_table(json.loads(report_path.read_text())):
            click.echo(line)
    else:
        click.echo("  (no sync check report)")
    click.echo("\nExports")
    for sub in (
        "exports/csv",
        "exports/matlab",
        "processing/synchronized_data",
        "processing/hand_segmentation",
    ):
        path = folder / sub
        files = (
            sorted(p.name for p in path.iterdir() if p.is_file())
            if path.is_dir()
            else []
        )
        click.echo(f"  {sub}/: {len(files)} files")
    runs = meta.get("processing", {}).get("runs", [])
    errors = [e for r in runs for e in (r.get("errors") or [])]
    for error in errors:
        click.echo(f"  processing error: {error}")
