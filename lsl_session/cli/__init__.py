"""The ``lsl-session`` command group; the single place library errors become CLI errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import click

from lsl_session import __version__
from lsl_session.errors import LslSessionError


class _Group(click.Group):
    """A group that turns library errors into one-line messages and exit code 1."""

    def main(self, args: Any = None, *rest: Any, **kwargs: Any) -> Any:
        """Defer stop signals from the very start for `STOP_COMMANDS`."""
        argv = list(sys.argv[1:] if args is None else args)
        command = next((a for a in argv if not a.startswith("-")), None)
        if command in STOP_COMMANDS:
            from lsl_session.signals import defer_signals

            defer_signals()
        return super().main(args, *rest, **kwargs)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        """A Ctrl-C while the command line is parsed: ``Error: interrupted``, 130."""
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _stdout_closed()
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)
        except LslSessionError as exc:
            raise click.ClickException(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None
        except OSError as exc:
            raise click.ClickException(
                f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            ) from None


#: Commands whose Ctrl-C/SIGTERM is a `stop_on_signals` block (deferred until it).
STOP_COMMANDS = frozenset({"record", "demo"})
#: Commands that use liblsl's network side (their liblsl log is routed).
LSL_COMMANDS = frozenset(
    {"record", "streams", "outlet", "demo", "replay", "agent", "gui"}
)


def _stdout_closed() -> None:
    """The reader of stdout went away (``| head``): exit quietly with 0."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n  lsl-session demo\n  lsl-session streams\n"
    "  lsl-session record --name pilot --duration 60\n"
    "  lsl-session process recordings/pilot_20250731_143022",
)
@click.version_option(__version__, prog_name="lsl-session")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def main(verbose: int, quiet: bool) -> None:
    """Record LSL streams into enforced session folders, then process them."""
    ctx = click.get_current_context()
    if ctx.invoked_subcommand in STOP_COMMANDS:
        from lsl_session.signals import defer_signals

        defer_signals()  # a Ctrl-C during the imports stops the command cleanly
    level = (
        logging.ERROR
        if quiet
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand in LSL_COMMANDS:  # the others never start liblsl
        from lsl_session.liblsl_log import route_liblsl_log

        route_liblsl_log()


def _register() -> None:
    from lsl_session.cli import session as session_cmds
    from lsl_session.cli.agent import agent_command
    from lsl_session.cli.archive import archive_command
    from lsl_session.cli.calibrate import COMMANDS as calibrate_commands
    from lsl_session.cli.demo import demo_command
    from lsl_session.cli.gui import COMMANDS as gui_commands
    from lsl_session.cli.imports import COMMANDS as import_commands
    from lsl_session.cli.outlet import outlet_group
    from lsl_session.cli.process import COMMANDS as process_commands
    from lsl_session.cli.record import record_command
    from lsl_session.cli.recover import COMMANDS as recover_commands
    from lsl_session.cli.replay import COMMANDS as replay_commands
    from lsl_session.cli.report import report_command
    from lsl_session.cli.streams import streams_command

    for command in session_cmds.COMMANDS:
        main.add_command(command)
    main.add_command(record_command)
    main.add_command(streams_command)
    main.add_command(outlet_group)
    main.add_command(demo_command)
    main.add_command(report_command)
    main.add_command(agent_command)
    main.add_command(archive_command)
    for command in [
        *recover_commands,
        *process_commands,
        *import_commands,
        *replay_commands,
        *calibrate_commands,
        *gui_commands,
    ]:
        main.add_command(command)


_register()
