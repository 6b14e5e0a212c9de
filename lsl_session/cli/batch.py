"""Batch options and runner shared by ``process`` and ``export --bids``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lsl_session import batch

#: Exit codes above this are reserved by shells (signals).
MAX_EXIT = 125


def batch_options(fn: Callable) -> Callable:
    """``--all``, ``--jobs``, ``--scheduler`` (``--root`` is the shared option)."""
    for option in reversed([
        click.option("--all", "all_", is_flag=True,
                     help="Every session, also those already done."),
        click.option("--jobs", "-j", type=click.IntRange(1, 256), default=1,
                     show_default=True, help="Local worker processes."),
        click.option("--scheduler", metavar="ADDRESS", default=None,
                     help="Run on a Dask distributed cluster (tcp://host:8786)."),
    ]):  # fmt: skip
        fn = option(fn)
    return fn


def wants_batch(paths: tuple[Path, ...], all_: bool, jobs: int,
                scheduler: str | None) -> bool:  # fmt: skip
    """True unless the command names exactly one path and no batch option."""
    return len(paths) != 1 or all_ or jobs > 1 or bool(scheduler)


def run(
    kind: str, paths: tuple[Path, ...], root: Path, *, all_: bool,
    jobs: int, scheduler: str | None, options: dict[str, Any],
    done: Callable[[Path], bool], what: str,
) -> None:  # fmt: skip
    """Collect the sessions, run one task each with a progress bar, report, exit.

    The sessions are ``paths`` (sessions, folders of sessions, XDF files) or,
    without paths, every session under ``root``.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    found = batch.collect(paths, [] if paths else [root], xdf=True)
    if kind == "process":
        options = {**options, "import_root": str(root)}
    busy = [p for p in found if p.is_dir() and batch.is_busy(p)]
    skipped = [
        p for p in found if p not in busy and not all_ and p.is_dir() and done(p)
    ]
    todo = [p for p in found if p not in busy and p not in skipped]
    for p in busy:
        click.echo(f"skipped {p}: still being recorded", err=True)
    tasks = [batch.Task(kind, str(p), tuple(sorted(options.items()))) for p in todo]
    where = f"on {scheduler}" if scheduler else f"with {jobs} job(s)"
    click.echo(f"{len(tasks)} session(s) to {what} {where}; "
               f"{len(skipped)} already done (--all redoes them)", err=True)  # fmt: skip
    console = Console(stderr=True)
    failed = 0
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as progress:  # fmt: skip
        bar = progress.add_task(what, total=len(tasks))

        def on_result(result: dict[str, Any]) -> None:
            nonlocal failed
            progress.advance(bar)
            if result["ok"]:
                extra = f"  {result['entities']}" if result.get("entities") else ""
                click.echo(f"ok     {result['path']}  {result['duration_s']:.1f} s"
                           f"  [{result['worker']}]{extra}")  # fmt: skip
            else:
                failed += 1
                click.echo(f"FAILED {result['path']}: {result['error']}"
                           f"  [{result['worker']}]", err=True)  # fmt: skip

        batch.run_tasks(tasks, jobs=jobs, scheduler=scheduler, on_result=on_result)
    click.echo(f"{len(tasks) - failed} done, {failed} failed, {len(skipped)} skipped")
    if failed:
        raise SystemExit(min(failed, MAX_EXIT))
