"""Post-processing pipeline (SPEC §8): load + sync, outputs, processors, report.

Every output folder is built under a hidden sibling and swapped into place, so a
re-run replaces the previous outputs as a whole (stale files disappear) and a
crash leaves the previous outputs intact. Each step and each processor runs in
isolation: an error is recorded in the run report and never aborts the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lsl_session.errors import LslSessionError
from lsl_session.fsutil import ensure_inside, fsync_dir, shared_mkdtemp
from lsl_session.limits import clip
from lsl_session.metadata import now_iso
from lsl_session.processing import plugins
from lsl_session.processing.model import ProcessingContext

logger = logging.getLogger(__name__)

#: Runs kept in ``metadata["processing"]["runs"]`` (oldest dropped first).
MAX_RUNS = 50


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def _clean_leftovers(final: Path) -> None:
    for stale in final.parent.glob(f".{final.name}.*-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(final: Path, root: Path | None = None) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``final``; on success swap it into place.

    On an exception the staging folder is removed and ``final`` is untouched.
    With ``root`` (the session folder), a symbolic link anywhere between ``root``
    and ``final`` is refused (`UnsafePathError`) before anything is written.
    """
    if root is not None:
        ensure_inside(root, final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if root is not None:
        ensure_inside(root, final)  # mkdir may not have raced in a link
    _clean_leftovers(final)
    tmp = shared_mkdtemp(f".{final.name}.new-", final.parent)
    try:
        yield tmp
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _listing(folder: Path, root: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file()
    )


def _error_text(exc: BaseException) -> str:
    """``Type: first line`` of an error, the line cut to 200 characters (it may
    quote file content)."""
    text = clip(str(exc).splitlines()[0]) if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _step(run: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    """Run one step in isolation and record status, duration, report or error."""
    started = time.perf_counter()
    entry: dict[str, Any] = {"status": "ok"}
    run["steps"][name] = entry
    try:
        entry["report"] = fn()
        return entry["report"]
    except KeyboardInterrupt:
        entry["status"] = "interrupted"
        raise
    except Exception as exc:
        entry.update(status="error", error=_error_text(exc))
        logger.warning("processing step %s failed: %s", name, entry["error"])
        logger.debug("%s", traceback.format_exc())
        run["errors"].append(f"{name}: {entry['error']}")
        return None
    finally:
        entry["duration_s"] = round(time.perf_counter() - started, 3)


def _relocate(value: Any, old: str, new: str) -> Any:
    """Rewrite staging paths in a processor's report to the final folder."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_relocate(v, old, new) for v in value]
    return value


def run_processor(
    spec: plugins.ProcessorSpec, paths: Any, streams: list, t0: float,
    options: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Load and run one processor with ``output_dir = processing/<name>/``."""
    processor = spec.load()
    final = paths.processing / spec.name
    with staged_dir(final, paths.root) as tmp:
        context = ProcessingContext(paths, streams, tmp, t0, dict(options))
        report = processor.run(context) or {}
    report = _relocate(report, str(tmp), str(final))
    return {
        "origin": spec.origin,
        "outputs": _listing(final, paths.root),
        "result": report,
    }


def export_outputs(
    data: Any, paths: Any, run: dict[str, Any], *, csv: bool, mat: bool,
    fif: bool = False, rate: float | None = None, sync: bool = False,
    mat_version: str = "auto",
) -> None:  # fmt: skip
    """Write the requested outputs of a loaded session, each as an isolated step."""
    from lsl_session.processing import to_csv, to_matlab, to_parquet

    root = paths.root
    if sync:

        def sync_step() -> dict[str, Any]:
            with staged_dir(paths.synchronized_data, root) as tmp:
                report = to_parquet.write_synchronized(
                    data.streams, tmp, t0=data.t0, rate=rate, events=data.events,
                    extra_report={"files": [Path(f).name for f in data.files],
                                  "problems": data.problems},
                    window=getattr(data, "window", None),
                )  # fmt: skip
            return {"outputs": _listing(paths.synchronized_data, root),
                    "aligned": report.get("aligned")}  # fmt: skip

        _step(run, "synchronized_data", sync_step)
    if csv:

        def csv_step() -> dict[str, Any]:
            with staged_dir(paths.exports_csv, root) as tmp:
                to_csv.write_csv(data.streams, tmp, t0=data.t0, events=data.events)
            return {"outputs": _listing(paths.exports_csv, root)}

        _step(run, "csv", csv_step)
    if mat:

        def mat_step() -> dict[str, Any]:
            with staged_dir(paths.exports_matlab, root) as tmp:
                info = to_matlab.write_matlab(
                    data.streams, tmp / f"{paths.session_id}.mat", t0=data.t0,
                    events=data.events, session_id=paths.session_id,
                    version=mat_version,
                )  # fmt: skip
            return {
                "outputs": _listing(paths.exports_matlab, root),
                "format": info["format"],
            }

        _step(run, "matlab", mat_step)
    if fif:

        def fif_step() -> dict[str, Any]:
            raw = data.to_mne(sfreq=rate)
            final = ensure_inside(
                root, root / "exports" / f"{paths.session_id}_raw.fif"
            )
            tmp = final.with_name(f".{final.stem}.tmp-{uuid.uuid4().hex[:8]}_raw.fif")
            try:
                raw.save(tmp, fmt="double", overwrite=True, verbose="error")
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            fsync_dir(final.parent)
            return {"outputs": [final.relative_to(root).as_posix()]}

        _step(run, "fif", fif_step)


def _load(session: Any, run: dict[str, Any], phone_clock: str | None = None) -> Any:
    """Load the session (``phone_clock``: see `load_session`; None follows the
    session's last processing)."""
    from lsl_session.processing.session_data import load_session

    def load_step() -> dict[str, Any]:
        data = load_session(session.root, phone_clock=phone_clock)
        run["_data"] = data
        return {
            "files": [Path(f).name for f in data.files],
            "streams": {s.name: len(s.time_stamps) for s in data.streams},
            "events": len(data.events),
            "problems": data.problems,
        }

    _step(run, "load", load_step)
    return run.pop("_data", None)


def _finish(
    session: Any, run: dict[str, Any], started: float, *, interrupted: bool = False
) -> dict[str, Any]:
    run["finished"] = now_iso()
    run["duration_s"] = round(time.perf_counter() - started, 3)
    failed = [k for k, v in run["steps"].items() if v["status"] == "error"]
    ok = [k for k, v in run["steps"].items() if v["status"] == "ok"]
    run["status"] = "ok" if not failed else ("partial" if ok else "error")
    if interrupted:  # Ctrl-C: the outputs of the unfinished step were not swapped in
        run["status"] = "interrupted"
        run["errors"].append("interrupted")
    run["outputs"] = sorted(
        {
            o
            for v in run["steps"].values()
            for o in (v.get("report") or {}).get("outputs", [])
        }
    )

    def change(meta: dict[str, Any]) -> None:
        runs = meta.setdefault("processing", {}).setdefault("runs", [])
        runs.append(run)
        del runs[:-MAX_RUNS]

    status = session.update(change).get("status")
    session.log_event(
        "processing_end",
        {"status": run["status"], "steps": list(run["steps"]), "errors": run["errors"],
         "duration_s": run["duration_s"]},
    )  # fmt: skip
    from lsl_session.session import FINISHED, remove_helper_files

    if status in FINISHED and getattr(session, "root", None) is not None:
        remove_helper_files(session.root)  # re-processing a finished session
    return run


def process_session(
    session: Any,
    *,
    rate: float | None = None,
    hand_segmentation: bool = True,
    processors: list[str] | None = None,
    options: dict[str, Any] | None = None,
    phone_clock: str = "remap",
    register_thermal: bool = False,
) -> dict[str, Any]:
    """Run the whole post-processing of a session and record it.

    Parameters
    ----------
    session : Session
        The session (``.paths``, ``.update``, ``.log_event``).
    rate : float | None
        Aligned-grid rate in Hz (default: highest regular rate up to 1 kHz).
    hand_segmentation : bool
        Run the ``hand_segmentation`` processor.
    processors : list of str | None
        Run only these processors (built-in or entry point); None runs all.
    options : dict | None
        Passed to every processor as ``context.options``.
    phone_clock : {"remap", "live"}
        Re-map phone streams from their recorded clock exchanges (a whole-session
        fit; see `lsl_session.processing.phone_remap`), or keep the relay's live
        stamps. Sessions without phone clock streams are not affected.
    register_thermal : bool
        Run the ``thermal_registration`` processor: thermal videos of devices
        with an RGB↔thermal calibration warped into the RGB view
        (``options["register_depth_mm"]`` sets the assumed scene depth).

    Returns
    -------
    dict
        The run report (``started``, ``finished``, ``status`` ok/partial/error,
        ``steps`` {name: status, duration_s, report | error}, ``errors``,
        ``outputs``), also appended to ``metadata["processing"]["runs"]``.
    """
    if rate is not None and not rate > 0:
        raise LslSessionError(f"--rate must be a positive number of Hz, got {rate}")
    from lsl_session.processing.phone_remap import MODES

    if phone_clock not in MODES:
        raise LslSessionError(
            f"--phone-clock must be one of {', '.join(MODES)}, got {phone_clock!r}"
        )
    started = time.perf_counter()
    run: dict[str, Any] = {
        "kind": "process", "started": now_iso(), "options": {"rate": rate, "hand_segmentation": hand_segmentation,
                                          "processors": processors, "phone_clock": phone_clock,
                                          "register_thermal": register_thermal},
        "steps": {}, "errors": [],
    }  # fmt: skip
    session.log_event("processing_start", {"options": run["options"]})
    try:
        _process_steps(session, run, rate=rate, hand_segmentation=hand_segmentation,
                       processors=processors, options=options,
                       phone_clock=phone_clock,
                       register_thermal=register_thermal)  # fmt: skip
    except KeyboardInterrupt:
        _finish(session, run, started, interrupted=True)
        raise
    return _finish(session, run, started)


def _process_steps(
    session: Any, run: dict[str, Any], *, rate: float | None, hand_segmentation: bool,
    processors: list[str] | None, options: dict[str, Any] | None,
    phone_clock: str = "remap", register_thermal: bool = False,
) -> None:  # fmt: skip
    from lsl_session.processing.phone_remap import phone_clocks

    paths = session.paths
    data = _load(session, run, "live")  # re-mapped below, events and all
    if data is not None:
        if phone_clocks(data.streams):  # only sessions with phones
            _step(run, "phone_clock", lambda: data.remap_phones(phone_clock))
        export_outputs(data, paths, run, csv=True, mat=True, rate=rate, sync=True)
    builtins = ["sync_check"] + (["hand_segmentation"] if hand_segmentation else [])
    builtins += ["thermal_registration"] if register_thermal else []
    try:
        specs = plugins.discover(builtins=builtins)
    except Exception as exc:  # a broken distribution's metadata
        run["errors"].append(f"plugins: {_error_text(exc)}")
        specs = plugins.builtin_specs(builtins)
    if processors is not None:
        specs = [s for s in specs if s.name in processors]
    streams = data.streams if data is not None else []
    t0 = data.t0 if data is not None else 0.0
    for spec in specs:
        _step(run, spec.name, lambda spec=spec: run_processor(
            spec, paths, streams, t0, options or {}))  # fmt: skip
    if data is not None and data.files:  # not for a calibration-only session
        from lsl_session.report import write_report

        _step(run, "report", lambda: write_report(paths.root, data=data, run=run))


def export_session(
    session: Any, *, csv: bool = True, mat: bool = True, fif: bool = True,
    rate: float | None = None, mat_version: str = "auto",
) -> dict[str, Any]:  # fmt: skip
    """Write the chosen exports (CSV, MATLAB, FIF) of a session and record the run.

    Returns
    -------
    dict
        The run report (as :func:`process_session`), with ``kind = "export"``.
    """
    started = time.perf_counter()
    options = {"csv": csv, "mat": mat, "fif": fif, "rate": rate,
               "mat_version": mat_version}  # fmt: skip
    run: dict[str, Any] = {"kind": "export", "started": now_iso(), "options": options,
                           "steps": {}, "errors": []}  # fmt: skip
    session.log_event("processing_start", {"options": options})
    data = _load(session, run)
    if data is not None:
        export_outputs(data, session.paths, run, csv=csv, mat=mat, fif=fif, rate=rate,
                       mat_version=mat_version)  # fmt: skip
    return _finish(session, run, started)
