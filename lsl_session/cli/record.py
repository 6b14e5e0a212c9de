"""``record``: record LSL streams into a new session until a duration, a signal or ``stop``."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import click
from click.core import ParameterSource

from lsl_session.cli._dashboard import (
    dashboard_config,
    dashboard_options,
    serve_dashboard,
)
from lsl_session.cli._labrecorder import (
    allow_missing_option,
    apply_labrecorder,
    check_required,
    labrecorder_config_option,
)
from lsl_session.cli._options import name_option, root_option
from lsl_session.errors import RecorderError
from lsl_session.labrecorder import looks_like_labrecorder_config
from lsl_session.recorder.report import all_streams_line, matched_lines
from lsl_session.signals import StopRequest, stop_on_signals


def format_status(status: dict) -> str:
    """One compact line per stream plus the file line, for the live display."""
    lines = [
        f"{status['elapsed_s'] or 0:7.1f} s  {status['bytes'] / 1e6:8.2f} MB"
        f"  disk free {status['disk_free'] / 1e9:6.1f} GB  file {status['file']}"
    ]
    for s in status["streams"]:
        lag = "-" if s["lag_s"] is None else f"{s['lag_s']:.3f}"
        lines.append(
            f"  [{s['stream_id']}] {s['name']:<28} {s['samples']:>10} samples"
            f"  {s['effective_srate']:>9.2f} Hz  lag {lag} s  gaps {s['gaps']}"
            + ("  LOST" if s["lost"] else "")
        )
    return "\n".join(lines)


@click.command(
    "record",
    epilog=(
        "\b\nExamples:\n"
        "  lsl-session record --name pilot --stream 'type=\"EEG\"' --duration 60\n"
        "  lsl-session record --stream \"name='Markers'\" --control-port 22345\n"
        "  lsl-session record --labrecorder-config LabRecorder.cfg"
    ),
)
@root_option
@name_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Session config (TOML or JSON); see configs/.",
)
@click.option(
    "--session",
    "session_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Record into this existing session (next _partNNN.xdf).",
)
@click.option(
    "--simulate",
    is_flag=True,
    help="Run every device of --config on its simulated backend.",
)
@click.option(
    "--stream",
    "queries",
    multiple=True,
    help='LSL query as LabRecorderCLI takes it, e.g. name="EEG". Repeatable.',
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds.",
)
@click.option(
    "--control-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Accept LabRecorder remote-control commands on this port.",
)
@click.option(
    "--control-host",
    default="127.0.0.1",
    show_default=True,
    help="Bind address of the control socket (non-loopback needs --control-token).",
)
@click.option(
    "--control-token",
    default=None,
    help="Token required on a non-loopback control socket.",
)
@click.option("--no-process", is_flag=True, help="Do not post-process after stopping.")
@click.option(
    "--split-mb",
    type=click.FloatRange(min=1),
    default=None,
    help="Start a new XDF part at this size.",
)
@click.option(
    "--compress",
    is_flag=True,
    help="Write <session_id>.xdf.gz: a gzip member closed at every fsync"
    " (pyxdf reads it as is).",
)
@click.option(
    "--split-minutes",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Start a new XDF part after this many minutes.",
)
@click.option(
    "--stop-grace",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="At stop, wait at most this long for each stream to deliver past the"
    " stop time (late Wi-Fi/phone data).",
)
@labrecorder_config_option
@allow_missing_option
@click.option(
    "--status-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between status lines (non-interactive).",
)
@dashboard_options
def record_command(
    root: Path,
    name: str | None,
    config_file: Path | None,
    session_dir: Path | None,
    simulate: bool,
    queries: tuple[str, ...],
    duration: float | None,
    control_port: int | None,
    control_host: str,
    control_token: str | None,
    no_process: bool,
    split_mb: float | None,
    split_minutes: float | None,
    compress: bool,
    stop_grace: float,
    labrecorder_config: Path | None,
    allow_missing: bool,
    status_interval: float,
    dashboard: bool,
    dashboard_host: str,
    dashboard_port: int,
    dashboard_token: str | None,
) -> None:
    """Create a session and record LSL streams into its XDF file.

    With --config, the lab runs from its config: every device it names is
    started (phone relay, Shimmer, webcam, markers), a device table is shown,
    phones get start_record/stop_record, their uploads are awaited, the devices
    are stopped and the session is processed (see docs/configs.md). Records
    until --duration, SIGINT/SIGTERM or a remote `stop` (--control-port; with
    --config a remote stop ends the lab run, without it each start…stop is a
    session); the last line of output is the session folder.
    """
    from lsl_session.manager import SessionManager

    if simulate and config_file is None:
        raise click.UsageError("--simulate needs --config")
    options: dict = {"stop_grace": stop_grace}
    if split_mb:
        options["split_bytes"] = split_mb * 1e6
    if split_minutes:
        options["split_seconds"] = split_minutes * 60
    if compress:
        options["compress"] = True
    stream_queries = list(queries) or None
    if config_file is not None and looks_like_labrecorder_config(config_file):
        labrecorder_config, config_file = config_file, None
    if config_file is not None:
        from lsl_session.cli._lab import run_lab
        from lsl_session.config import load_config
        from lsl_session.lab import LabOptions

        control = None if control_port is None else (
            control_host, control_port, control_token)  # fmt: skip
        config = load_config(config_file, simulate=simulate)
        source = click.get_current_context().get_parameter_source("root")
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            # docs/configs.md: an explicit --root (or LSL_SESSION_ROOT) wins
            config = dataclasses.replace(config, root=root)
        return run_lab(
            config,
            LabOptions(
                root=root, name=name, session_dir=session_dir, duration=duration,
                process=not no_process, status_interval=status_interval,
                extra_queries=list(queries), recorder_options=options,
                dashboard=dashboard_config(
                    dashboard, dashboard_host, dashboard_port, dashboard_token
                ),
                control=control,
            ),
            allow_missing=allow_missing,
        )  # fmt: skip
    lr = None
    if labrecorder_config is not None:
        lr, root, stream_queries, control_port = apply_labrecorder(
            labrecorder_config, root, stream_queries, control_port
        )
    from lsl_session.lsl import validate_query

    for q in stream_queries or []:
        validate_query(q)
    if dashboard:  # a configuration error comes before any stream is looked for
        from lsl_session.dashboard.server import check_bind

        check_bind(dashboard_host, dashboard_token)
    manager = SessionManager(root)

    def open_session(session_name: str | None) -> None:
        if session_dir is not None:
            manager.open_session(session_dir)
        else:
            manager.create_session(session_name)

    # footers get written: a signal stops the recording instead of the process
    live = serve_dashboard(
        manager, enabled=dashboard, host=dashboard_host, port=dashboard_port,
        token=dashboard_token,
    )  # fmt: skip
    if queries and control_port is None and not allow_missing:
        from lsl_session.control.server import is_loopback

        if dashboard and not dashboard_token and not is_loopback(dashboard_host):
            raise click.ClickException(
                f"refusing to serve the dashboard on non-loopback {dashboard_host!r}"
                " without a token (give --dashboard-token)"
            )
        _require_matches(list(queries))  # after the usage checks, before any folder
    with stop_on_signals() as stopper, live:
        try:
            if control_port is not None:
                from lsl_session.control.runs import RunServerOptions

                code = _serve_remote_control(
                    manager, stopper, open_session, RunServerOptions(
                        host=control_host, port=control_port, token=control_token,
                        queries=stream_queries, name=name, process=not no_process,
                        duration=duration, status_interval=status_interval,
                        recorder_options=options, required=lr.required if lr else (),
                        allow_missing=allow_missing,
                        auto_start=bool(lr and lr.auto_start),
                        fields=lr.default_fields() if lr else {},
                    ),
                )  # fmt: skip
                raise SystemExit(code)
            else:
                open_session(name)
                manager.start_recording(stream_queries, **options)
                click.echo(f"recording into {manager.session_dir}", err=True)
                if not stream_queries:
                    click.echo(all_streams_line(manager.recorder), err=True)
                for line in matched_lines(manager.recorder):
                    click.echo(line, err=True)
                missing = check_required(manager, lr, allow_missing)
                deadline = None if duration is None else time.monotonic() + duration
                _wait(manager, stopper, deadline, status_interval)
            if stopper.signal_name:
                click.echo(f"{stopper.signal_name}: stopping", err=True)
            tolerated = set(lr.queries) if lr and allow_missing else set()
            code = _finish(
                manager, no_process, all_streams=not stream_queries, tolerated=tolerated
            )
            code = code or (2 if missing and not allow_missing else 0)
        finally:
            # stops a recording still running (footers) and releases the session,
            # so a failed command does not leave it looking interrupted
            manager.close()
    click.echo(str(manager.session_dir))
    if code:
        raise SystemExit(code)


#: Seconds each --stream query may take to match a stream before the start.
MATCH_WAIT_S = 3.0


def _require_matches(queries: list[str], wait: float = MATCH_WAIT_S) -> None:
    """Exit 2 before anything is created when a query matches no visible stream.

    As LabRecorderCLI, which creates no file then: each unmatched query is named
    with the closest visible streams. ``--allow-missing`` records anyway and picks
    the stream up when it appears.
    """
    from lsl_session.lsl import explain_unmatched, find_streams

    unmatched = [q for q in queries if not find_streams(q, wait)]
    if not unmatched:
        return
    visible = find_streams(None, 0.5)
    for query in unmatched:
        click.echo(f"Error: {explain_unmatched(query, visible)}", err=True)
    click.echo(
        "nothing recorded, no session created (--allow-missing records anyway and"
        " picks the stream up when it appears)",
        err=True,
    )
    raise SystemExit(2)


def _serve_remote_control(manager, stopper, open_session, run_options) -> int:
    """Each remote start…stop is one session (SPEC §12); see `control.runs`.

    Every finished session folder is printed on stdout as it is done.
    """
    from lsl_session.control.runs import serve_runs

    def listening(address: tuple[str, int]) -> None:
        click.echo(f"remote control on {address[0]}:{address[1]}", err=True)

    def done(folder: Path, outcome: str) -> None:
        click.echo(f"session {outcome}: {folder}", err=True)
        click.echo(str(folder))

    return serve_runs(
        manager, stopper, run_options, create_session=open_session,
        on_listening=listening, on_session=done,
        on_status=lambda status: click.echo(format_status(status), err=True),
    )  # fmt: skip


def _wait(
    manager, stopper: StopRequest, deadline: float | None, interval: float
) -> None:
    next_status = time.monotonic() + interval
    while not stopper.is_set():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        timeout = min(0.2, max(0.0, (deadline or now + 1) - now))
        stopper.wait(timeout)
        recorder = manager.recorder
        if recorder is not None and time.monotonic() >= next_status:
            click.echo(format_status(recorder.status()), err=True)
            next_status = time.monotonic() + interval
        if manager.state.value == "error":
            return


def _finish(
    manager, no_process: bool, *, all_streams: bool = False, tolerated=frozenset()
) -> int:
    """Stop, report and end the session; return the exit code (2: a query never
    matched a stream, as LabRecorderCLI)."""
    from lsl_session.lifecycle import State
    from lsl_session.report.verdict import read_verdict

    unmatched: list[str] = []
    summary: dict | None = None
    if manager.state is State.RECORDING:
        if all_streams:
            click.echo(all_streams_line(manager.recorder), err=True)
        summary = manager.stop_recording()
        for s in summary.get("streams", []):
            click.echo(
                f"  {s['name']} (host {s.get('hostname') or '-'}):"
                f" {s['sample_count']} samples",
                err=True,
            )
        unmatched = [
            q for q in summary.get("unmatched_queries") or [] if q not in tolerated
        ]
        for query in unmatched:
            click.echo(
                f"Error: query {query!r} never matched any stream: nothing recorded"
                " from it (see `lsl-session streams`)",
                err=True,
            )
    if manager.state is State.ERROR:
        meta = manager.current_session or {}
        runs = meta.get("recording", {}).get("runs", [])
        message = manager.last_error or (
            (runs[-1].get("failure") or runs[-1].get("error")) if runs else None
        )
        click.echo(str(manager.session_dir))  # the data is there: say where
        raise RecorderError(message or "recording failed")
    if manager.state is State.ACTIVE:
        from lsl_session.manager import EMPTY_LINE

        folder = manager.session_dir
        manager.end_session(process=not no_process)
        if manager.state is State.EMPTY:
            click.echo(EMPTY_LINE, err=True)
        else:
            for line in read_verdict(folder, summary):
                click.echo(line, err=True)
    return 2 if unmatched else 0
