"""``agent``: run this computer's devices of a lab config for the recorder host."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(
    "agent",
    epilog="\b\nExamples:\n"
    "  lsl-session agent --config lab.toml --host camera-pc\n"
    "  lsl-session agent --config lab.toml --host camera-pc --recorder 10.0.0.5",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    required=True,
    help="The lab config (the same file as on the recorder host).",
)
@click.option("--host", required=True, help="This computer's name in the config.")
@click.option(
    "--recorder",
    default=None,
    help="Address of the recorder host (default: [agents] recorder).",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=None, help="Its agent port."
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("agent-recordings"),
    show_default=True,
    help="Local staging folder for the devices' files until they are delivered.",
)
@click.option("--simulate", is_flag=True, help="Run the devices simulated.")
@click.option(
    "--once", is_flag=True, help="Exit after one session's files are delivered."
)
def agent_command(
    config_file: Path,
    host: str,
    recorder: str | None,
    port: int | None,
    root: Path,
    simulate: bool,
    once: bool,
) -> None:
    """Run the devices the lab config gives HOST; report to the recorder host.

    The agent connects to the recorder host (retrying until it is up), starts
    its devices when a recording starts, reports their state, and on stop
    delivers their files into the session there (sha256 checked at both ends,
    resumed after a cut). Ctrl-C stops it; undelivered files stay in --root.
    """
    from lsl_session.agents.agent import Agent
    from lsl_session.config import load_config
    from lsl_session.signals import stop_on_signals

    config = load_config(config_file, simulate=simulate)
    agent = Agent(
        config,
        host,
        root,
        say=lambda line: click.echo(line, err=True),
        recorder=recorder,
        port=port,
    )
    with stop_on_signals() as stopper:
        agent.run(stopper, once=once)
