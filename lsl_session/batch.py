"""A study at a time: process or BIDS-export many sessions, locally or on Dask.

Sessions come from ``--root`` folders and/or paths (a session folder, a folder of
sessions, an ``.xdf`` file for export). Each session is one task; tasks run in this
process (``jobs=1``), in ``jobs`` local worker processes, or on a Dask distributed
cluster (``scheduler="tcp://host:8786"``; the workers need lsl_session installed
and the sessions on a path they can read). A task never raises: its result holds
``ok`` and a one-line ``error``, so one failing session never stops the others.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from lsl_session import catalog
from lsl_session.errors import LslSessionError, MetadataError
from lsl_session.metadata import read_metadata
from lsl_session.xdf.compressed import split_xdf_name

logger = logging.getLogger(__name__)

#: Steps whose failure makes processing of a session fail.
ESSENTIAL_STEPS = ("load", "synchronized_data", "csv", "matlab", "fif")
#: Statuses of a session that is still being recorded (never processed by a batch).
BUSY = ("active", "recording", "processing")


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: ``kind`` ("process" or "bids") on ``path``."""

    kind: str
    path: str
    options: tuple[tuple[str, Any], ...] = ()


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def _where() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()} pid {os.getpid()}"


def run_task(task: Task) -> dict[str, Any]:
    """Run one task and return its result (never raises an ``Exception``)."""
    started = time.perf_counter()
    result: dict[str, Any] = {"path": task.path, "kind": task.kind, "ok": False,
                              "error": None, "worker": _where()}  # fmt: skip
    try:
        if task.kind == "process":
            result.update(_process(task.path, dict(task.options)))
        elif task.kind == "bids":
            result.update(_bids(task.path, dict(task.options)))
        else:
            raise LslSessionError(f"unknown task kind {task.kind!r}")
    except Exception as exc:
        result["error"] = _one_line(exc)
        logger.debug("%s failed:\n%s", task.path, traceback.format_exc())
    result["duration_s"] = round(time.perf_counter() - started, 3)
    return result


def _process(path: str, options: dict[str, Any]) -> dict[str, Any]:
    from lsl_session.importer import session_for
    from lsl_session.processing.pipeline import process_session
    from lsl_session.session import Session

    options = dict(options)
    root = options.pop("import_root", None)
    folder = session_for(path, root) if root is not None else Path(path)
    session = Session(folder)
    try:
        run = process_session(session, **options)
    finally:
        session.close()
    failed = [
        n for n in ESSENTIAL_STEPS if run["steps"].get(n, {}).get("status") == "error"
    ]
    error = (
        f"{failed[0]} failed: {run['steps'][failed[0]]['error']}" if failed else None
    )
    return {"ok": not failed, "error": error, "status": run["status"],
            "session": str(folder),
            "warnings": [e for e in run["errors"] if not failed]}  # fmt: skip


def _bids(path: str, options: dict[str, Any]) -> dict[str, Any]:
    from lsl_session.bids import export_bids

    options = dict(options)
    root = options.pop("bids_root")
    report = export_bids(path, root, **options)
    return {"ok": True, "entities": report["entities"], "files": len(report["files"]),
            "not_mapped": report["not_mapped"]}  # fmt: skip


# ------------------------------------------------------------------ finding
def _succeeded(run: Any) -> bool:
    if not isinstance(run, dict) or run.get("kind") != "process":
        return False
    steps = run.get("steps") if isinstance(run.get("steps"), dict) else {}
    return "load" in steps and not any(
        isinstance(steps.get(n), dict) and steps[n].get("status") == "error"
        for n in ESSENTIAL_STEPS
    )


def is_processed(folder: Path) -> bool:
    """True when a ``process`` run of the session produced its essential outputs."""
    try:
        meta = read_metadata(folder)
    except MetadataError:
        return False
    runs = (meta.get("processing") or {}).get("runs") or []
    return isinstance(runs, list) and any(_succeeded(r) for r in runs)


def is_busy(folder: Path) -> bool:
    """True while the session's recorder (a live owner) still holds it."""
    try:
        meta = read_metadata(folder)
    except MetadataError:
        return False
    return catalog.effective_status(meta) in BUSY and catalog.owner_alive(meta)


def collect(
    paths: Iterable[Path], roots: Iterable[Path], *, xdf: bool = False
) -> list[Path]:
    """Session folders (and, with ``xdf``, XDF files) named by paths and roots.

    A path may be a session folder, a folder of sessions or (``xdf``) an ``.xdf``
    file. Order is kept, duplicates dropped.

    Raises
    ------
    LslSessionError
        For a path that is none of these.
    """
    found: list[Path] = []
    for root in roots:
        if not Path(root).is_dir():
            raise LslSessionError(f"{root}: no such recordings root")
        found.extend(catalog.session_folders(root))
    for path in paths:
        path = Path(path)
        if path.is_file() and xdf and split_xdf_name(path.name):
            found.append(path)
        elif path.is_dir() and (path / "session_metadata.json").is_file():
            found.append(path)
        elif path.is_dir() and catalog.session_folders(path):
            found.extend(catalog.session_folders(path))
        else:
            what = "session folder, folder of sessions or .xdf file" if xdf else (
                "session folder or folder of sessions")  # fmt: skip
            raise LslSessionError(f"{path}: not a {what}")
    out: list[Path] = []
    seen = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# ------------------------------------------------------------------ running
def run_tasks(
    tasks: list[Task],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``tasks`` (in order of completion); return their results.

    Parameters
    ----------
    jobs : int
        Local worker processes (1: in this process). Ignored with ``scheduler``.
    scheduler : str | None
        A Dask distributed scheduler address (``tcp://host:8786``).
    on_result : callable | None
        Called with each result as it arrives (progress).
    """
    done: list[dict[str, Any]] = []

    def deliver(result: dict[str, Any]) -> None:
        done.append(result)
        if on_result is not None:
            on_result(result)

    if scheduler:
        _run_dask(tasks, scheduler, deliver)
    elif jobs > 1 and len(tasks) > 1:
        _run_local(tasks, jobs, deliver)
    else:
        for task in tasks:
            deliver(run_task(task))
    return done


#: Modules the fork server imports once, so each worker starts without re-importing.
PRELOAD = [
    "lsl_session.batch",
    "lsl_session.processing.pipeline",
    "lsl_session.bids.export",
]


def _context() -> Any:
    """A fork server (clean: no threads inherited; imports done once), else spawn."""
    try:
        ctx = get_context("forkserver")
    except ValueError:  # a platform without fork
        return get_context("spawn")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _run_local(tasks: list[Task], jobs: int, deliver: Callable) -> None:
    """``jobs`` worker processes (fork server); a crashed worker fails only its session.

    A process that dies (killed, out of memory, a crashing extension) breaks
    the whole pool, failing every unfinished task with it. Those tasks are run
    again one at a time, each in a fresh process, so that only the session
    that kills its process is reported failed.
    """
    ctx = _context()
    broken: list[Task] = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(run_task, t): t for t in tasks}
        for future in as_completed(futures):
            try:
                deliver(future.result())
            except BrokenProcessPool:
                broken.append(futures[future])
            except Exception:  # could not pickle the task or its result
                deliver(_collect(future, futures[future]))
    if broken:
        logger.warning("a worker process died; running %d session(s) one at a time "
                       "to isolate it", len(broken))  # fmt: skip
    for task in broken:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            future = pool.submit(run_task, task)
            result = _collect(future, task)
        if not result["ok"] and result["worker"] == "?":
            result["error"] = f"the worker process died ({result['error']})"
        deliver(result)


def _collect(future: Any, task: Task) -> dict[str, Any]:
    """A future's result; a worker that died becomes that task's error."""
    try:
        return future.result()
    except Exception as exc:  # the worker process died, or could not unpickle
        return {"path": task.path, "kind": task.kind, "ok": False,
                "error": _one_line(exc), "worker": "?", "duration_s": 0.0}  # fmt: skip


def _run_dask(tasks: list[Task], address: str, deliver: Callable) -> None:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise LslSessionError(
            "--scheduler needs dask.distributed: pip install 'lsl-session[cluster]'"
        ) from None
    from lsl_session.scheduler import (
        SchedulerError,
        parse_address,
        probe,
        worker_wait,
    )

    where = parse_address(address)
    probe(where)  # a silent listener would hang Client() forever
    try:
        client = Client(where.url, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler {where.url}: {_one_line(exc)}"
        ) from None
    try:
        wait = worker_wait()
        try:
            client.wait_for_workers(1, timeout=wait)
        except (OSError, TimeoutError):
            raise SchedulerError(
                f"the Dask scheduler {where.url} has no worker (none joined in"
                f" {wait:g} s)"
            ) from None
        batch = uuid.uuid4().hex[:8]
        keys = [f"lsl-session-{t.kind}-{batch}-{i}" for i, t in enumerate(tasks)]
        futures = client.map(run_task, tasks, pure=False, retries=0, key=keys)
        owner = dict(zip([f.key for f in futures], tasks, strict=True))
        for future in dask_completed(futures):
            deliver(_collect(future, owner[future.key]))
    finally:
        client.close()
