"""recover_session / recover_root: make crashed sessions whole again (SPEC §9)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lsl_session import layout
from lsl_session.catalog import effective_status, owner_alive, session_folders
from lsl_session.errors import MetadataError, SessionNotFoundError, SessionStateError
from lsl_session.layout import SessionPaths
from lsl_session.lifecycle import UNFINISHED, State
from lsl_session.limits import clip
from lsl_session.metadata import now_iso, read_metadata, write_metadata
from lsl_session.recovery.eventlog import LogRepair, repair_event_log
from lsl_session.recovery.rebuild import (
    check_files,
    keep_corrupt_copy,
    rebuild_metadata,
)
from lsl_session.recovery.xdf_repair import XdfRepair, repair_xdf
from lsl_session.session import FINISHED, Session, remove_helper_files, sha256_file

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class RecoveryReport:
    """What :func:`recover_session` found and did for one session folder.

    Attributes
    ----------
    folder : Path
        The session folder.
    previous_status : str | None
        The stored status before recovery (None when the metadata was unreadable).
    status : str | None
        The status afterwards (``recovered`` when anything was done).
    interrupted : bool
        A crash had left the session unfinished.
    actions : list of str
        Every repair done (or, in a dry run, needed). Empty: nothing to do.
    problems : list of str
        Findings that recovery does not fix: missing or changed registered files,
        unreadable data. Nothing is ever deleted to "fix" them.
    saved : list of str
        Files created to keep bytes that were cut (torn tails, corrupt metadata),
        relative to the folder.
    xdf : list of XdfRepair
        One entry per XDF file.
    dry_run : bool
        Nothing was written.
    """

    folder: Path
    previous_status: str | None = None
    status: str | None = None
    interrupted: bool = False
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    xdf: list[XdfRepair] = field(default_factory=list)
    dry_run: bool = False

    @property
    def session_id(self) -> str:
        """The session id (the folder name)."""
        return self.folder.name

    @property
    def nothing_to_do(self) -> bool:
        """True when the session needed no repair and was not interrupted."""
        return not self.actions and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (for ``recover --json``)."""
        return {
            "session_id": self.session_id,
            "path": str(self.folder),
            "previous_status": self.previous_status,
            "status": self.status,
            "interrupted": self.interrupted,
            "nothing_to_do": self.nothing_to_do,
            "actions": list(self.actions),
            "problems": list(self.problems),
            "saved": list(self.saved),
            "xdf": [x.to_dict() for x in self.xdf],
            "dry_run": self.dry_run,
        }


def _creation_interrupted(meta: dict[str, Any], log: Path) -> bool:
    """Active, no owner and no ``session_start`` event: the creator died early."""
    if meta.get("status") != State.ACTIVE or meta.get("owner"):
        return False
    try:
        return b'"session_start"' not in log.read_bytes()
    except OSError:
        return True


def needs_recovery(folder: Path | str) -> bool:
    """True if a crash left the session unfinished or its metadata unreadable.

    Like `catalog.find_unfinished`, plus sessions whose creator died between
    creating the folder and recording its owner.
    """
    folder = Path(folder)
    try:
        meta = read_metadata(folder)
    except MetadataError:
        return True
    if effective_status(meta) == State.INTERRUPTED:
        return True
    return _creation_interrupted(meta, SessionPaths(folder).log)


def _recording_from_xdf(repairs: list[XdfRepair]) -> dict[str, Any]:
    """The ``recording`` metadata section, computed from the (repaired) XDF files."""
    streams: dict[int, dict[str, Any]] = {}
    for rep in repairs:
        for s in rep.streams:
            old = streams.get(s["stream_id"])
            if old is None:
                streams[s["stream_id"]] = dict(s)
                continue
            old["sample_count"] += s["sample_count"]
            old["clock_offsets"] += s["clock_offsets"]
            if old["first_timestamp"] is None:
                old["first_timestamp"] = s["first_timestamp"]
            if s["last_timestamp"] is not None:
                old["last_timestamp"] = s["last_timestamp"]
    firsts = [s["first_timestamp"] for s in streams.values() if s["first_timestamp"]]
    lasts = [s["last_timestamp"] for s in streams.values() if s["last_timestamp"]]
    return {
        "xdf_files": [rep.path.name for rep in repairs],
        "streams": list(streams.values()),
        "runs": [],
        "start_lsl_time": min(firsts) if firsts else None,
        "stop_lsl_time": max(lasts) if lasts else None,
        "rebuilt_from_xdf": True,
    }


def _event_file_problems(folder: Path, events: list[dict[str, Any]]) -> list[str]:
    """Compare files announced by ``file_received`` events with the folder."""
    paths, problems = SessionPaths(folder), []
    for e in events:
        rel, digest = e.get("file_path"), e.get("sha256")
        if e.get("event") != "file_received" or not rel:
            continue
        try:
            target = paths.resolve(rel)
        except Exception:
            continue
        if not target.is_file():
            problems.append(f"{e.get('device_id')}: missing file {rel} (from the log)")
        elif digest and sha256_file(target) != digest:
            problems.append(
                f"{e.get('device_id')}: changed file {rel} (sha256 differs)"
            )
    return problems


def _end_time(events: list[dict[str, Any]], repairs: list[XdfRepair]) -> str | None:
    stamps = [
        datetime.fromisoformat(e["timestamp"])
        for e in events
        if isinstance(e.get("timestamp"), str)
    ]
    for rep in repairs:
        stat = rep.path.stat()
        stamps.append(datetime.fromtimestamp(stat.st_mtime).astimezone())
    if not stamps:
        return None
    return max(stamps).isoformat(timespec="microseconds")


def _looks_like_session(paths: SessionPaths) -> bool:
    """A session-id name and at least one file only a session folder has."""
    if layout.parse_session_id(paths.root.name) is None:
        return False
    return (
        paths.metadata.exists()
        or paths.log.exists()
        or paths.xdf(1).exists()
        or paths.devices.is_dir()
    )


def _load_meta(folder: Path) -> dict[str, Any] | None:
    try:
        return read_metadata(folder)
    except MetadataError as exc:
        logger.info("%s", exc)
        return None


def recover_session(folder: Path | str, *, dry_run: bool = False) -> RecoveryReport:
    """Repair one session folder and mark it ``recovered`` (SPEC §9).

    Parameters
    ----------
    folder : Path
        The session folder.
    dry_run : bool
        Only report what would be done (used by :func:`diagnose_session`).

    Returns
    -------
    RecoveryReport
        What was found and done. A healthy session reports nothing to do and
        is left byte-for-byte unchanged.

    Raises
    ------
    SessionNotFoundError
        If ``folder`` is missing or is not a session folder.
    SessionStateError
        If the session's owner process is still running (and not ``dry_run``).

    Notes
    -----
    Order: XDF files (torn tails cut and kept aside, missing footers appended),
    the event log (complete events kept, torn bytes kept aside), the metadata
    (rebuilt when missing or corrupt, a corrupt file kept as
    ``session_metadata.json.corrupt-<timestamp>``), a ``recovered`` event, and
    last the metadata status: the status is the commit point, so a crash during
    recovery leaves a session that ``recover`` picks up again. Nothing is
    deleted; every run is idempotent.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise SessionNotFoundError(f"{folder}: no such session folder")
    paths = SessionPaths(folder)
    meta = _load_meta(folder)
    if meta is None and not _looks_like_session(paths):
        raise SessionNotFoundError(f"{folder}: not a session folder")
    report = RecoveryReport(folder, dry_run=dry_run)
    if meta is not None:
        report.previous_status = report.status = str(meta.get("status"))
        if meta.get("status") in UNFINISHED and owner_alive(meta):
            pid = (meta.get("owner") or {}).get("pid")
            if not dry_run:
                raise SessionStateError(
                    f"{folder.name} is {meta.get('status')} in running process {pid};"
                    " stop it before recovering"
                )
            report.problems.extend(check_files(folder, meta))
            return report
        report.interrupted = effective_status(meta) == State.INTERRUPTED or (
            _creation_interrupted(meta, paths.log)
        )
    else:
        report.interrupted = True

    # 1. XDF files
    xdf_paths = [
        *folder.glob("*.xdf"),
        *folder.glob("*.xdf.gz"),
        *folder.glob("*.xdfz"),
    ]
    for xdf_path in sorted(xdf_paths):
        rep = repair_xdf(xdf_path, dry_run=dry_run)
        report.xdf.append(rep)
        report.actions.extend(rep.actions())
        report.problems.extend(rep.problems)
        if rep.torn_tail:
            report.saved.append(rep.torn_tail.name)
    # 2. event log
    log: LogRepair = repair_event_log(paths.log, paths.lock, dry_run=dry_run)
    report.actions.extend(log.actions())
    if log.torn_file:
        report.saved.append(log.torn_file.name)
    recording = _recording_from_xdf(report.xdf)
    # 3. metadata
    if meta is None:
        why = "corrupt" if paths.metadata.exists() else "missing"
        meta, found = rebuild_metadata(folder, log.events, recording)
        report.problems.extend(found)
        report.problems.extend(_event_file_problems(folder, log.events))
        report.actions.append(
            f"rebuilt {layout.METADATA_FILE} from the folder, the event log and "
            f"{len(report.xdf)} XDF file(s) (it was {why})"
        )
        if paths.metadata.exists() and not dry_run:
            report.saved.append(keep_corrupt_copy(paths.metadata).name)
    else:
        report.problems.extend(check_files(folder, meta))
        rec = meta.get("recording") or {}
        stale = set(rec.get("xdf_files") or []) != set(recording["xdf_files"]) or any(
            x.changed for x in report.xdf
        )
        if report.xdf and report.interrupted and stale:
            keep = {k: rec[k] for k in ("runs",) if k in rec}
            meta["recording"] = {**recording, **keep}
            report.actions.append("recording summary recomputed from the XDF file(s)")
    reserve = folder / layout.RESERVE_FILE
    if report.interrupted and reserve.is_file() and not reserve.is_symlink():
        report.actions.append(f"removed the disk reserve {layout.RESERVE_FILE}")
    if report.nothing_to_do:
        logger.info("%s: nothing to do", folder.name)
        if not dry_run and meta is not None and meta.get("status") in FINISHED:
            remove_helper_files(folder)
        return report
    report.status = State.RECOVERED.value
    if dry_run:
        return report
    _commit(folder, meta, report, log.events)
    return report


def _commit(
    folder: Path,
    meta: dict[str, Any],
    report: RecoveryReport,
    events: list[dict[str, Any]],
) -> None:
    """Log the ``recovered`` event, then write the metadata with its new status."""
    paths = SessionPaths(folder)
    if not paths.metadata.exists() or meta.get("rebuilt_from"):
        write_metadata(folder, meta)  # the session must exist to log events
    record = {
        "time": now_iso(),
        "previous_status": report.previous_status,
        "actions": list(report.actions),
        "problems": list(report.problems),
        "saved": list(report.saved),
        "previous_owner": meta.get("owner"),
    }
    session = Session(folder, lsl_outlet=False)
    try:
        session.log_event(
            "recovered",
            {
                "previous_status": report.previous_status,
                "actions": report.actions,
                "problems": report.problems,
            },
        )
    finally:
        session.close()
    end = meta.get("end_time") or _end_time(events, report.xdf)

    def change(current: dict[str, Any]) -> None:
        if current.get("rebuilt_from") or meta.get("rebuilt_from"):
            current.clear()
            current.update(meta)
        elif "recording" in meta:
            current["recording"] = meta["recording"]
        if current.get("recovery"):
            record["earlier"] = [current["recovery"]]
        current["recovery"] = record
        current["status"] = State.RECOVERED.value
        current.pop("owner", None)
        if current.get("end_time") is None and end is not None:
            current["end_time"] = end
            try:
                start = datetime.fromisoformat(current["start_time"])
                delta = datetime.fromisoformat(end) - start
                current["duration_s"] = round(delta.total_seconds(), 6)
            except (KeyError, TypeError, ValueError):
                pass

    session_meta = Session(folder, lsl_outlet=False)
    try:
        session_meta.update(change)
    finally:
        session_meta.close()
    remove_helper_files(folder)  # the reserve (a crash mid-recording) and the lock
    logger.info("%s recovered: %s", folder.name, "; ".join(report.actions))


def recover_root(root: Path | str, *, dry_run: bool = False) -> list[RecoveryReport]:
    """Recover every unfinished session under ``root`` (see :func:`needs_recovery`).

    Raises
    ------
    SessionNotFoundError
        If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise SessionNotFoundError(f"{root}: no such recordings root")
    reports = []
    for folder in session_folders(root):
        try:
            if needs_recovery(folder):
                reports.append(recover_session(folder, dry_run=dry_run))
            elif not dry_run:
                _tidy_finished(folder)
        except Exception as exc:  # one bad session must not stop the others
            logger.warning("%s: recovery failed: %s", folder.name, clip(exc))
            logger.debug("recovery of %s failed", folder, exc_info=True)
            report = RecoveryReport(folder.resolve(), dry_run=dry_run)
            report.problems.append(
                f"recovery failed: {type(exc).__name__}: {clip(exc)}"
            )
            report.interrupted = True
            reports.append(report)
    return reports


def _tidy_finished(folder: Path) -> None:
    """A finished session whose owner died before releasing it (a kill -9 right
    after the end) keeps its lock/reserve helper files: remove them."""
    try:
        meta = read_metadata(folder)
    except MetadataError:
        return
    if meta.get("status") in FINISHED and not owner_alive(meta):
        removed = remove_helper_files(folder)
        if removed:
            logger.info("%s: removed helper files %s", folder.name, ", ".join(removed))


def diagnose_session(folder: Path | str) -> list[str]:
    """Problems ``info``/``list`` should show: what recovery would repair or report.

    Read-only. Registered files are checked by size and sha256; XDF files and the
    event log are checked unless a running process owns the session.

    Returns
    -------
    list of str
        Empty for a healthy session.
    """
    report = recover_session(folder, dry_run=True)
    out = [f"needs recovery: {a}" for a in report.actions]
    if report.interrupted and not report.actions:
        out.append("needs recovery: interrupted session")
    return out + report.problems
