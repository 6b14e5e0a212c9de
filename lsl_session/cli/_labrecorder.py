"""``record --labrecorder-config``: apply a LabRecorder.cfg to the record command."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from lsl_session.labrecorder import (
    LabRecorderConfig,
    log_missing_required,
    log_not_honoured,
    missing_required,
    read_labrecorder_config,
)

logger = logging.getLogger(__name__)

labrecorder_config_option = click.option(
    "--labrecorder-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A LabRecorder.cfg: StudyRoot, RequiredStreams, RCSEnabled/RCSPort, "
    "AutoStart, SessionBlocks (also taken from --config FILE.cfg).",
)
allow_missing_option = click.option(
    "--allow-missing",
    is_flag=True,
    help="Exit 0 even if a RequiredStreams entry or a --config device is missing;"
    " record even if a --stream query matches nothing yet (it is picked up later).",
)


def apply_labrecorder(
    path: Path, root: Path, queries: list[str] | None, control_port: int | None
) -> tuple[LabRecorderConfig, Path, list[str] | None, int | None]:
    """Read ``path``; return it with the root, queries and control port it implies.

    An explicit ``--root`` wins over ``StudyRoot``; ``--control-port`` over
    ``RCSPort``; required streams are added to the ``--stream`` queries.
    """
    config = read_labrecorder_config(path)
    log_not_honoured(config)
    source = click.get_current_context().get_parameter_source("root")
    if config.root is not None and source is not click.core.ParameterSource.COMMANDLINE:
        root = config.root
    merged = list(queries or [])
    merged += [q for q in config.queries if q not in merged]
    if control_port is None and config.rcs_enabled:
        control_port = config.rcs_port
    if control_port is None and not config.auto_start:
        logger.info("%s: AutoStart=0 but no GUI and no RCS: recording now", path.name)
    return config, root, merged or None, control_port


def check_required(manager, config: LabRecorderConfig | None, allow: bool) -> bool:
    """After a start: say which required streams are missing; True if any is."""
    if config is None:
        return False
    missing = missing_required(manager.recorder, config.required)
    if missing:
        message = log_missing_required(manager, missing)
        click.echo(f"{'Warning' if allow else 'Error'}: {message}", err=True)
    return bool(missing)
