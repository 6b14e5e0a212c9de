"""``import``: a session folder from an XDF file recorded by any tool (LabRecorder, us)."""

from __future__ import annotations

from pathlib import Path

import click

from lsl_session.cli._options import name_option, root_option


@click.command(
    "import",
    epilog="\b\nExamples:\n  lsl-session import sub-P001_task-rest_eeg.xdf\n"
    "  lsl-session import pilot.xdf --root data --copy",
)
@click.argument("xdf_file", type=click.Path(dir_okay=False, path_type=Path))
@root_option
@name_option
@click.option("--copy", is_flag=True, help="Copy the file instead of hard-linking it.")
def import_command(xdf_file: Path, root: Path, name: str | None, copy: bool) -> None:
    """Create a session folder from XDF_FILE (its _partNNN siblings too).

    The original is hard-linked (or copied) into the session, never moved or
    modified; its sha256 is recorded. Importing the same file again into the same
    root prints the existing session. Last stdout line: the session folder.
    """
    from lsl_session.importer import import_xdf

    folder = import_xdf(xdf_file, root, name=name, copy=copy)
    click.echo(f"imported {xdf_file} as {folder.name}", err=True)
    click.echo(str(folder))


COMMANDS = [import_command]
