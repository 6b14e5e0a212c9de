"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

import click

from lsl_session.manager import DEFAULT_ROOT_ENV

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DEFAULT_ROOT_ENV,
    default="recordings",
    show_default=True,
    help=f"Recordings root (env {DEFAULT_ROOT_ENV}).",
)
name_option = click.option("--name", default=None, help="Session name prefix.")
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable JSON."
)
