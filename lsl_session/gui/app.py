"""The control room's state and actions, on top of the remote-control handler.

Every action of the page goes through the same `ControlHandler` as LabRecorder's
remote control (RCS): ``select``, ``filename``, ``start``, ``stop``. So a PsychoPy
script on the RCS port and the page see one state: the page shows the fields a
script set, and a Stop from either increments the run.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from lsl_session.catalog import session_folders, summarize_session
from lsl_session.control.finisher import SessionFinisher
from lsl_session.control.handler import ControlHandler
from lsl_session.control.server import ControlServer
from lsl_session.dashboard.state import RATE_MIN_SECONDS, RATE_TOLERANCE, LiveState
from lsl_session.errors import LslSessionError
from lsl_session.gui.jobs import KINDS, JobRunner, command_for
from lsl_session.gui.naming import (
    RunFields,
    load_fields,
    placement,
    save_fields,
)
from lsl_session.gui.viewer import ChannelViewer
from lsl_session.labrecorder import RequiredStream
from lsl_session.lifecycle import State
from lsl_session.lsl import explain_unmatched, matches_query, stream_record

logger = logging.getLogger(__name__)

#: Longest note or marker text (characters); streams listed; sessions listed.
MAX_NOTE = 500
MAX_STREAMS_LISTED = 500
MAX_SESSIONS_LISTED = 500
#: Seconds between two scans of the study root for past sessions.
SESSIONS_TTL = 2.0
#: Longest a note waits for the run's event stream to be recorded (seconds).
EVENTS_WAIT_S = 3.0
#: Marker buttons the page shows (any text can be typed too).
MARKER_BUTTONS = ("block_start", "block_end", "trial_start", "artifact")

_FIELD_NAMES = ("participant", "session", "task", "acquisition", "modality")


class StreamRow(TypedDict):
    """One visible stream in the page's list."""

    name: str
    type: str
    hostname: str
    source_id: str
    uid: str
    channel_count: int
    nominal_srate: float
    channel_format: str
    query: str | None
    selected: bool
    required: bool
    same_name_hosts: int


class RequiredRow(TypedDict):
    label: str
    query: str
    present: bool


@dataclass
class GuiOptions:
    """How the control room records (see ``lsl-session gui --help``)."""

    root: Path
    required: tuple[RequiredStream, ...] = ()
    queries: list[str] | None = None
    process: bool = True
    rcs_host: str = "127.0.0.1"
    rcs_port: int | None = None
    rcs_token: str | None = None
    bids_root: Path | None = None
    recorder_options: dict[str, Any] = field(default_factory=dict)


def _quote(value: str) -> str | None:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


def identity_query(rec: dict[str, Any]) -> str | None:
    """An exact query for one stream: name, source_id and host (None if unquotable)."""
    parts = []
    for key in ("name", "source_id", "hostname"):
        quoted = _quote(str(rec.get(key) or ""))
        if quoted is None:
            return None
        parts.append(f"{key}={quoted}")
    return " and ".join(parts)


class GuiApp:
    """The control room (see the module notes)."""

    def __init__(self, manager: Any, options: GuiOptions) -> None:
        self.manager = manager
        self.options = options
        self.study_root = Path(options.root)
        self.study_root.mkdir(parents=True, exist_ok=True)
        self.finisher = SessionFinisher(process=options.process)
        self.control: ControlServer | None = None
        if options.rcs_port is not None:
            self.control = ControlServer(
                manager,
                host=options.rcs_host,
                port=options.rcs_port,
                token=options.rcs_token,
                default_streams=options.queries,
                create_session=self._create_session,
                finisher=self.finisher,
            )
            self.handler = self.control.handler
        else:
            self.handler = ControlHandler(
                manager,
                default_streams=options.queries,
                create_session=self._create_session,
                finisher=self.finisher,
            )
        self.handler.required = tuple(options.required)
        self.handler.allow_missing = True  # shown in red; the run goes on
        self.handler.on_run_ended = self._run_ended
        saved = load_fields(self.study_root)
        self._set_handler_fields(saved)
        self.template = saved.template
        self.live = LiveState(lambda: manager.recorder, lambda: manager.session)
        self.viewer = ChannelViewer()
        self.jobs = JobRunner()
        self._lock = threading.Lock()
        self._sessions: dict[str, Path] = {}
        self._sessions_at = 0.0
        self._session_rows: list[dict[str, Any]] = []
        self._last_base: Path | None = None
        self.bids_root = options.bids_root or self.study_root / "bids"

    # ----------------------------------------------------------- life cycle
    def start(self) -> None:
        """Start the RCS socket (if any) and the stream watch."""
        if self.control is not None:
            self.control.start()
        self.handler.visible_infos()  # starts the continuous resolver
        self.handler.warm()  # the selected streams open now: Start is instant

    def close(self) -> None:
        """Stop a running recording (its session is ended), then the RCS socket."""
        if self.control is not None:
            self.control.stop()
        self.handler.close()  # stops a running recording, closes the open streams
        self.finisher.wait(120.0)

    # ------------------------------------------------------------- naming
    def fields(self) -> RunFields:
        """The current naming fields (shared with RCS ``filename``)."""
        f = self.handler.fields
        run_text = str(f.get("run", "1")).strip()
        run = int(run_text) if run_text.isascii() and run_text.isdigit() else 1
        values = {k: str(f.get(k, "")) for k in _FIELD_NAMES if k in f}
        out = RunFields(**values, run=max(1, min(run, 999)))  # type: ignore[arg-type]
        out.template = self.handler.template or self.template
        return out

    def _set_handler_fields(self, f: RunFields) -> None:
        for name in _FIELD_NAMES:
            self.handler.fields[name] = getattr(f, name)
        self.handler.fields["run"] = str(f.run)
        self.handler.template = f.template

    def set_fields(self, data: dict[str, Any]) -> RunFields:
        """Apply the page's fields (validated as a whole; nothing set on error)."""
        data = dict(data)
        root = data.pop("root", None)
        current = self.fields()
        merged = {
            **current.__dict__,
            **{k: v for k, v in data.items() if v is not None},
        }
        known = set(current.__dict__)
        unknown = set(merged) - known
        if unknown:
            raise LslSessionError(f"unknown field(s): {', '.join(sorted(unknown))}")
        if isinstance(merged.get("run"), str) and merged["run"].isdigit():
            merged["run"] = int(merged["run"])
        new = RunFields(**merged).check()
        placement(new)  # refuse a template that cannot name a session
        with self.handler._lock:
            self._set_handler_fields(new)
            self.template = new.template
            if root is not None:
                self._set_root(str(root))
        save_fields(self.study_root, new)
        return new

    def _set_root(self, text: str) -> None:
        path = Path(text.strip()).expanduser()
        if not text.strip() or len(text) > 1024 or "\x00" in text:
            raise LslSessionError("the study root must be a folder path")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LslSessionError(f"cannot create the study root: {exc}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise LslSessionError("the study root is not writable")
        self.study_root = path
        self._sessions_at = 0.0

    def _create_session(self, _name: str | None) -> object:
        """Create the run's session under the template's folders (handler lock held)."""
        base = Path(self.manager.base_recordings_dir)
        if self._last_base is not None and base != self._last_base:
            self.study_root = base  # an RCS ``filename {root:…}`` moved the study
        where = placement(self.fields())
        target = where.root_under(self.study_root)
        target.mkdir(parents=True, exist_ok=True)
        self.manager.base_recordings_dir = target
        self._last_base = target
        return self.manager.create_session(where.name)

    def _run_ended(self, run: dict[str, Any]) -> None:
        """After every stop (page or RCS, handler lock held): next run number."""
        f = self.fields()
        f.run = min(f.run + 1, 999)
        self.handler.fields["run"] = str(f.run)
        self._sessions_at = 0.0
        try:
            save_fields(self.study_root, f)
        except OSError as exc:
            logger.warning("gui: could not save the fields: %s", exc)

    # ------------------------------------------------------------ streams
    def update(self) -> None:
        """Resolve the network now (LabRecorder's Update button)."""
        self.handler.handle("update")

    def stream_rows(self) -> list[StreamRow]:
        """The visible streams with their selection and required marks."""
        infos = self.handler.visible_infos()[:MAX_STREAMS_LISTED]
        hosts: dict[str, set[str]] = {}
        for info in infos:
            hosts.setdefault(info.name(), set()).add(info.hostname())
        selection = list(self.handler.selection)
        required = [r.query for r in self.handler.required]
        rows: list[StreamRow] = []
        for info in infos:
            rec = stream_record(info)
            rows.append(
                {
                    "name": rec["name"],
                    "type": rec["type"],
                    "hostname": rec["hostname"],
                    "source_id": rec["source_id"],
                    "uid": rec["uid"],
                    "channel_count": rec["channel_count"],
                    "nominal_srate": rec["nominal_srate"],
                    "channel_format": rec["channel_format"],
                    "query": identity_query(rec),
                    "selected": self.handler.select_all
                    or any(matches_query(info, q) for q in selection),
                    "required": any(matches_query(info, q) for q in required),
                    "same_name_hosts": len(hosts[rec["name"]]),
                }
            )
        return rows

    def required_rows(self) -> list[RequiredRow]:
        infos = self.handler.visible_infos()
        return [
            {
                "label": r.label,
                "query": r.query,
                "present": any(matches_query(i, r.query) for i in infos),
            }
            for r in self.handler.required
        ]

    def select(self, queries: list[str]) -> list[str]:
        """Replace the selection with ``queries`` (each checked like RCS ``select``).

        Returns
        -------
        list of str
            For each query no visible stream matches: why, and the closest
            streams (a typo shows on the page, not only in the server's log).
        """
        if len(queries) > 256:
            raise LslSessionError("at most 256 streams can be selected")
        with self.handler._lock:
            previous = (list(self.handler.selection), self.handler.select_all)
        self._reply(self.handler.handle("select none"))
        try:
            for query in queries:
                if not isinstance(query, str):
                    raise LslSessionError("a selection is a list of queries")
                self._reply(self.handler.handle(f"select {query}"))
        except LslSessionError:
            with self.handler._lock:
                self.handler.selection, self.handler.select_all = previous
            raise
        infos = self.handler.visible_infos()
        return [
            explain_unmatched(q, infos)
            for q in queries
            if not any(matches_query(i, q) for i in infos)
        ]

    # ------------------------------------------------------------ control
    @staticmethod
    def _reply(reply: bytes) -> None:
        if reply.startswith(b"ERR"):
            raise LslSessionError(reply.decode("utf-8", "replace")[3:].strip())

    def start_run(self) -> None:
        """Start a run (as RCS ``start``)."""
        self._reply(self.handler.handle("start"))

    def stop_run(self) -> None:
        """Stop the run (as RCS ``stop``); the run number increments."""
        if self.manager.state is not State.RECORDING:
            raise LslSessionError("nothing is recording: nothing to stop")
        self._reply(self.handler.handle("stop"))

    def split(self) -> str:
        """Close the current file and go on in the next part, losing nothing."""
        with self.handler._lock:
            recorder = self.manager.recorder
            if recorder is None or self.manager.state is not State.RECORDING:
                raise LslSessionError("nothing is recording: press Start first")
            part = recorder.split()
        self.manager.logger.log_event(
            "marker", {"label": "file split", "source": "gui", "file": part.name}
        )
        return part.name

    def note(self, text: str, kind: str = "note") -> dict[str, Any]:
        """Put a note or marker into the session's event stream (and so the XDF)."""
        if not isinstance(text, str) or not text.strip():
            raise LslSessionError("a note needs some text")
        if len(text) > MAX_NOTE:
            raise LslSessionError(f"a note has at most {MAX_NOTE} characters")
        if self.manager.session is None:
            raise LslSessionError("no session is open: press Start first")
        self._wait_events_recorded(EVENTS_WAIT_S)
        return self.manager.logger.log_event(
            "marker", {"label": text, "kind": kind, "source": "gui"}
        )

    def _wait_events_recorded(self, timeout: float) -> bool:
        """Wait (bounded) until the recorder has the session's event stream open.

        The event stream is a new outlet of each run's session; its inlet opens
        about a second into the run, and LSL delivers only what is pushed after
        that. A note typed in that second waits for it, so it reaches the XDF
        (it is in the event log either way).
        """
        recorder = self.manager.recorder
        session = self.manager.session
        if recorder is None or session is None:
            return False
        name = f"{session.session_id}_events"
        deadline = time.monotonic() + timeout
        while True:
            try:
                names = {s.get("name") for s in recorder.status().get("streams", [])}
            except Exception:
                return False
            if name in names:
                return True
            if time.monotonic() >= deadline:
                logger.warning("gui: the session's event stream is not open yet")
                return False
            time.sleep(0.05)

    # -------------------------------------------------------------- views
    def live_view(self) -> dict[str, Any]:
        """The recording's live figures (no traces: see `ChannelViewer`)."""
        self.viewer.attach(self.manager.recorder)
        snap = self.live.snapshot()
        snap.pop("traces", None)
        elapsed = snap.get("elapsed_s") or 0.0
        size = snap.get("bytes") or 0
        free = snap.get("disk_free")
        if free is None:
            free = shutil.disk_usage(self.study_root).free
        rate = size / elapsed if snap.get("recording") and elapsed > 1 else None
        snap["disk_free"] = free
        snap["bytes_per_s"] = rate
        snap["time_left_s"] = None if not rate else free / rate
        for s in snap.get("streams", []):
            flags = self.viewer.flags(int(s.get("stream_id", -1)))
            nominal = s.get("nominal_srate") or 0.0
            effective = s.get("effective_srate") or 0.0
            seconds = (s.get("samples") or 0) / nominal if nominal else 0.0
            if seconds >= RATE_MIN_SECONDS and effective:
                if abs(effective / nominal - 1.0) > RATE_TOLERANCE:
                    flags.append("rate off")
            s["flags"] = flags
            if s.get("state") == "ok" and flags:
                s["state"] = flags[0]
                # a rate off nominal is already one of the dashboard's warnings
                snap["warnings"].extend(
                    _flag_sentence(s, f) for f in flags if f != "rate off"
                )
        snap["state"] = self.manager.state.value
        snap["runs"] = len(self.handler.runs)
        return snap

    def sessions(self) -> list[dict[str, Any]]:
        """Past sessions under the study root (cached `SESSIONS_TTL` s), newest first."""
        now = time.monotonic()
        with self._lock:
            if now - self._sessions_at < SESSIONS_TTL:
                return self._session_rows
        newest = session_folders(self.study_root)[-MAX_SESSIONS_LISTED:]
        found = {folder.name: folder for folder in newest}
        rows = []
        for sid, folder in found.items():
            rows.append(_session_row(sid, folder, self.study_root))
        rows.sort(key=lambda r: r.get("start_time") or "", reverse=True)
        with self._lock:
            self._sessions, self._session_rows, self._sessions_at = found, rows, now
        return rows

    def session_folder(self, session_id: str) -> Path:
        """The folder of a listed session (only listed ones: no path from the page)."""
        self.sessions()
        with self._lock:
            folder = self._sessions.get(session_id)
        if folder is None:
            raise LslSessionError("no such session under the study root")
        return folder

    def run_job(self, kind: str, session_id: str) -> dict[str, Any]:
        """Process, export BIDS or recover a listed session in the background."""
        if kind not in KINDS:
            raise LslSessionError(f"unknown action; one of {', '.join(KINDS)}")
        folder = self.session_folder(session_id)
        busy = self.manager.state in (State.RECORDING, State.ACTIVE, State.CREATING)
        if (
            busy
            and self.manager.session_dir is not None
            and Path(self.manager.session_dir).resolve() == folder.resolve()
        ):
            raise LslSessionError("this session is recording: stop it first")
        argv = command_for(kind, folder, self.bids_root)
        return dict(self.jobs.submit(kind, session_id, argv))


def _flag_sentence(stream: dict[str, Any], flag: str) -> str:
    name = stream.get("name", "?")
    if flag == "flat":
        return f"{name}: every channel is flat (no signal?)"
    return f"{name}: a channel sits at its limits (clipped or saturated)"


def _session_row(session_id: str, folder: Path, root: Path) -> dict[str, Any]:
    from lsl_session.report.verdict import read_verdict

    try:
        summary = summarize_session(folder)
    except Exception as exc:
        return {"session_id": session_id, "status": "unreadable", "error": str(exc)}
    size = 0
    for name in summary.get("xdf_files") or []:
        try:
            size += (folder / name).stat().st_size
        except OSError:
            pass
    try:
        verdict = read_verdict(folder)
    except Exception:
        verdict = []
    report = folder / "processing" / "report.html"
    return {
        "session_id": session_id,
        "where": str(folder.parent.relative_to(root)) if folder != root else "",
        "status": summary.get("status"),
        "start_time": summary.get("start_time"),
        "duration_s": summary.get("duration_s"),
        "bytes": size,
        "streams": len(summary.get("streams") or []),
        # the report is one click away on the page: its path is left out
        "verdict": [re.sub(r",? report: .*$", "", line) for line in verdict[:3]],
        "has_report": report.is_file() and not report.is_symlink(),
    }
