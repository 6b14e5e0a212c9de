"""``export --bids``: options and the run over one or many sessions."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click

from lsl_session.cli import batch as cli_batch


def bids_options(fn: Callable) -> Callable:
    """``--bids`` and the BIDS entity/format options."""
    for option in reversed([
        click.option("--bids", type=click.Path(file_okay=False, path_type=Path),
                     default=None, help="Write (or extend) the BIDS dataset DIR."),
        click.option("--subject", default=None, help="BIDS sub- label."),
        click.option("--session", "bids_session", default=None, help="BIDS ses- label."),
        click.option("--task", default=None, help="BIDS task- label."),
        click.option("--run", "run_", default=None, help="BIDS run- index."),
        click.option("--eeg-format", type=click.Choice(["brainvision", "edf"]),
                     default="brainvision", show_default=True, help="EEG file format."),
        click.option("--line-freq", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="Power line frequency in Hz (_eeg.json)."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def run_bids(
    paths: tuple[Path, ...], bids_root: Path, root: Path, *, all_: bool,
    jobs: int, scheduler: str | None, subject: str | None, bids_session: str | None,
    task: str | None, run_: str | None, eeg_format: str, line_freq: float | None,
) -> None:  # fmt: skip
    """Export the sessions named (all of them), or those under ``root`` not yet
    in ``bids_root`` (``all_``: every one)."""
    from lsl_session.bids.entities import resolve
    from lsl_session.bids.export import is_exported

    entities = {"subject": subject, "session": bids_session, "task": task, "run": run_}
    given = {k: v for k, v in entities.items() if v is not None}
    resolve("check", log=False, **{"subject": "x", "task": "x", **given})  # bad labels
    options: dict[str, Any] = {"bids_root": str(bids_root.resolve()), **given,
                               "eeg_format": eeg_format, "line_freq": line_freq}  # fmt: skip
    done = partial(is_exported, bids_root=bids_root, **given)
    cli_batch.run("bids", paths, root, all_=all_ or bool(paths),
                  jobs=jobs, scheduler=scheduler, options=options, done=done,
                  what="export to BIDS")  # fmt: skip
