"""``new``, ``list`` and ``info``: creating and inspecting session folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lsl_session.catalog import list_sessions, summarize_session
from lsl_session.cli._options import json_option, name_option, root_option
from lsl_session.errors import SessionNotFoundError


@click.command(
    "new", epilog="\b\nExamples:\n  lsl-session new --root data --name pilot"
)
@root_option
@name_option
def new_command(root: Path, name: str | None) -> None:
    """Create a session folder; print its path as the last line."""
    from lsl_session.manager import SessionManager

    manager = SessionManager(root, lsl_events=False)
    meta = manager.create_session(name)
    manager.close()
    click.echo(f"created session {meta['session_id']}", err=True)
    click.echo(str(manager.session_dir))


@click.command("list", epilog="\b\nExamples:\n  lsl-session list --root data --json")
@root_option
@json_option
def list_command(root: Path, as_json: bool) -> None:
    """List the sessions under the recordings root."""
    sessions = list_sessions(root)
    if as_json:
        click.echo(json.dumps(sessions, indent=2))
        return
    if not sessions:
        click.echo(f"no sessions under {root}")
        return
    for s in sessions:
        streams = len(s.get("streams", []))
        flag = "  (run `lsl-session recover`)" if s["status"] == "interrupted" else ""
        click.echo(
            f"{s['session_id']:<48} {s['status']:<12} devices={len(s.get('devices', []))}"
            f" streams={streams}{flag}"
        )


def _echo_session(info: dict) -> None:
    click.echo(f"session   {info['session_id']}")
    click.echo(f"path      {info['path']}")
    click.echo(f"status    {info['status']}")
    for key in ("start_time", "end_time", "duration_s"):
        if info.get(key) is not None:
            click.echo(f"{key:<9} {info[key]}")
    click.echo(f"devices   {', '.join(info.get('devices', [])) or '-'}")
    click.echo(f"files     {info.get('n_files', 0)}")
    click.echo(f"xdf       {', '.join(info.get('xdf_files', [])) or '-'}")
    for s in info.get("streams", []):
        click.echo(f"  stream  {s['name']} ({s['type']}): {s['sample_count']} samples")
    for problem in info.get("problems", []):
        click.echo(f"problem   {problem}")


def _echo_xdf(info: dict) -> None:
    inside = f", {info['xdf_size']} bytes of XDF" if info.get("xdf_size") else ""
    click.echo(f"file      {info['path']} ({info['file_size']} bytes{inside})")
    for s in info["streams"]:
        footer = "footer" if s.get("footer") else "NO FOOTER"
        click.echo(
            f"  [{s['stream_id']}] {s['name']} ({s['type']}, {s['channel_count']} ch"
            f" {s['channel_format']} @ {s['nominal_srate']} Hz): {s['sample_count']}"
            f" samples, {s['duration'] or 0:.3f} s, {s['clock_offsets']} clock offsets,"
            f" {footer}"
        )
    for problem in info.get("problems", []):
        click.echo(f"problem   {problem}")


@click.command(
    "info",
    epilog="\b\nExamples:\n  lsl-session info recordings/pilot_20250731_143022\n"
    "  lsl-session info recording.xdf --json",
)
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def info_command(path: Path, as_json: bool) -> None:
    """Summarise a session folder or an .xdf file."""
    if path.is_file() and path.name.lower().endswith((".xdf", ".xdfz", ".xdf.gz")):
        from lsl_session.xdf.reader import summarize

        info = summarize(path)
        info["path"] = str(path)
        disk = path.stat().st_size
        if info.get("file_size") != disk:  # compressed: the XDF inside is larger
            info["xdf_size"], info["file_size"] = info.get("file_size"), disk
        if as_json:
            click.echo(json.dumps(info, indent=2, default=str))
        else:
            _echo_xdf(info)
        return
    if not path.exists():
        raise SessionNotFoundError(f"{path}: no such file or folder")
    info = summarize_session(path)
    from lsl_session.recovery import diagnose_session

    # sha256-level checks replace the catalog's cheap size check here
    info["problems"] = [p for p in info["problems"] if "file " not in p]
    info["problems"] += diagnose_session(path)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        _echo_session(info)


COMMANDS = [new_command, list_command, info_command]
