"""The end-of-run summary: session tree, streams, sync-check table, exports."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lsl_session.report.verdict import aligned_text


def session_tree(folder: Path, max_files: int = 6) -> list[str]:
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


def sync_table(report: dict) -> list[str]:
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
            f"  {aligned_text(r)}"
        )
    return rows


def print_summary(folder: Path, summary: dict, meta: dict) -> None:
    click.echo("\nSession tree")
    for line in session_tree(folder):
        click.echo(f"  {line}")
    click.echo("\nStreams")
    for s in sorted(summary.get("streams", []), key=lambda s: s["name"]):
        click.echo(
            f"  [{s['stream_id']:>2}] {s['name']:<28} {s['type']:<14}"
            f" {s['sample_count']:>7} samples  {s['clock_offsets']} offsets"
            f"  host {s.get('hostname') or '-'}"
        )
    report_path = folder / "processing" / "sync_check" / "sync_check.json"
    click.echo("\nSync check (alignment error vs the sync_pulse markers)")
    if report_path.exists():
        for line in sync_table(json.loads(report_path.read_text())):
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
