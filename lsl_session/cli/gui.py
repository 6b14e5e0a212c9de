"""``lsl-session gui``: the control room in the browser."""

from __future__ import annotations

from pathlib import Path

import click

from lsl_session.cli._options import root_option


@click.command(
    "gui",
    epilog="\b\nExamples:\n  lsl-session gui --root study\n"
    "  lsl-session gui --labrecorder-config LabRecorder.cfg\n"
    "  lsl-session gui --config lab.toml --rcs-port 22345\n"
    "  lsl-session gui --host 0.0.0.0 --token s3cret   # a tablet on the LAN",
)
@root_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Lab config: its root, and its [record] streams as required streams.",
)
@click.option(
    "--labrecorder-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="LabRecorder.cfg: StudyRoot, RequiredStreams, RCS port.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port of the page (0: any free one).",
)
@click.option("--token", default=None, help="Required for a non-loopback --host.")
@click.option(
    "--rcs-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also answer LabRecorder remote control (RCS) on this port.",
)
@click.option("--no-process", is_flag=True, help="Do not process each run.")
@click.option("--duration", type=float, default=None, help="Serve for this long (s).")
def gui_command(
    root: Path,
    config_file: Path | None,
    labrecorder_config: Path | None,
    host: str,
    port: int,
    token: str | None,
    rcs_port: int | None,
    no_process: bool,
    duration: float | None,
) -> None:
    """Serve the control room in the browser (loopback by default; prints its URL).

    Pick streams, name runs, Start/Stop/Split, add notes and markers, watch
    every channel live, and browse, process and export past sessions.

    The page and LabRecorder remote control (--rcs-port) drive one recorder:
    each Start…Stop is one session folder, named from the run fields and the
    template (LabRecorder's placeholders, BIDS layout included). Closing the
    page never stops a recording; Ctrl-C ends the server (a running recording
    is stopped and its footers written).
    """
    import time

    from lsl_session.gui.app import GuiApp, GuiOptions
    from lsl_session.gui.server import GuiServer
    from lsl_session.labrecorder import RequiredStream, read_labrecorder_config
    from lsl_session.manager import SessionManager
    from lsl_session.signals import stop_on_signals

    source = click.get_current_context().get_parameter_source("root")
    explicit_root = source is click.core.ParameterSource.COMMANDLINE
    required: tuple[RequiredStream, ...] = ()
    queries: list[str] | None = None
    if config_file is not None and labrecorder_config is not None:
        raise click.UsageError("give --config or --labrecorder-config, not both")
    if config_file is not None:
        from lsl_session.config import load_config

        config = load_config(config_file)
        if config.root is not None and not explicit_root:
            root = config.root
        required = tuple(RequiredStream(q, q) for q in config.streams or [])
        queries = list(config.streams or []) or None
    if labrecorder_config is not None:
        lr = read_labrecorder_config(labrecorder_config)
        if lr.root is not None and not explicit_root:
            root = lr.root
        required = lr.required
        queries = lr.queries or None
        if rcs_port is None and lr.rcs_enabled:
            rcs_port = lr.rcs_port
    manager = SessionManager(root)
    app = GuiApp(
        manager,
        GuiOptions(
            root=root, required=required, queries=queries, process=not no_process,
            rcs_port=rcs_port,
        ),
    )  # fmt: skip
    server = GuiServer(app, host=host, port=port, token=token)
    with stop_on_signals() as stopper:
        app.start()
        server.start()
        click.echo(f"control room: {server.url}", err=True)
        if app.control is not None:
            a = app.control.address
            click.echo(f"remote control (RCS) on {a[0]}:{a[1]}", err=True)
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while not stopper.wait(0.2):
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            server.stop()
            app.close()
            manager.close()
    click.echo(str(app.study_root))


COMMANDS = [gui_command]
