"""Apply remote-control commands to a `SessionManager`; one reply per line."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsl_session.control.finisher import SessionFinisher
from lsl_session.control.protocol import (
    FILENAME_OPTIONS,
    REPLY_OK,
    Command,
    parse_line,
    session_name_from_fields,
)
from lsl_session.errors import LslSessionError
from lsl_session.labrecorder import (
    RequiredStream,
    log_missing_required,
    missing_required,
)
from lsl_session.lifecycle import State
from lsl_session.lsl import (
    explain_unmatched,
    matches_query,
    sort_key,
    stream_record,
    validate_query,
)
from lsl_session.recorder.report import all_streams_line

if TYPE_CHECKING:
    from lsl_session.manager import SessionManager

logger = logging.getLogger(__name__)

_WINDOWS_PATH = re.compile(r"^[A-Za-z]:[\\/]")


def _short(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


class ControlHandler:
    """Execute parsed control lines against a session manager.

    Parameters
    ----------
    manager : SessionManager
        The manager to drive.
    default_streams : list of str | None
        The initial selection (LSL queries), e.g. the record command's
        ``--stream`` options.
    default_name : str | None
        The session name used when no ``filename`` participant/session/task/
        acquisition/run/modality field was given.
    process : bool
        Post-process each session ``stop`` ends (in the background, see
        `SessionFinisher`); ignored when ``finisher`` is given.
    recorder_options : dict | None
        Passed to `SessionManager.start_recording` (split size, …).
    finisher : SessionFinisher | None
        Receives every ended session folder (processing, run reports).
    resolve_wait : float
        Seconds ``update`` waits for streams to answer.
    create_session : callable | None
        ``create_session(name)`` making a new current session (e.g. one that
        also registers configured devices); default ``manager.create_session``.

    Notes
    -----
    `handle` may be called from several connection threads: commands that
    change state are serialised by a lock (a ``start`` that arrives during a
    ``stop`` waits for it and then runs: it is never lost), while ``status``
    never waits for them. ``stop`` returns once the file is complete and the
    session ended; post-processing runs in the background, so the next
    ``start`` records at once.
    """

    def __init__(
        self,
        manager: SessionManager,
        *,
        default_streams: Iterable[str] | None = None,
        default_name: str | None = None,
        process: bool = True,
        recorder_options: dict[str, Any] | None = None,
        finisher: SessionFinisher | None = None,
        resolve_wait: float = 0.5,
        create_session: Callable[[str | None], object] | None = None,
    ) -> None:
        self.manager = manager
        self._create_session = create_session or manager.create_session
        self.default_name = default_name
        self.finisher = finisher or SessionFinisher(process=process)
        self.recorder_options = dict(recorder_options or {})
        self.quit_requested = threading.Event()
        self.resolve_wait = resolve_wait
        self.runs: list[dict[str, Any]] = []
        #: LabRecorder.cfg RequiredStreams, checked at every start
        self.required: tuple[RequiredStream, ...] = ()
        self.allow_missing = False
        self._missing: list[str] = []
        self.fields: dict[str, str] = {}
        self.template: str | None = None
        self.selection: list[str] = list(default_streams or [])
        self.select_all = False
        self._updated: list[Any] = []
        self._resolver: Any = None
        self._lock = threading.Lock()

    def handle(self, line: str) -> bytes:
        """Execute one line and return the bytes to send back.

        Returns
        -------
        bytes
            ``b"OK"`` for every line (also unknown or failed ones), except
            ``status``, which answers one JSON line ending in ``\\n``.
        """
        command = parse_line(line)
        if command.kind == "status":
            return self._status()
        try:
            with self._lock:
                self._dispatch(command)
        except Exception:
            logger.exception("control command %s failed", _short(line))
        return REPLY_OK

    # --------------------------------------------------------------- commands
    def _dispatch(self, command: Command) -> None:
        kind = command.kind
        if kind == "start":
            self._start()
        elif kind == "stop":
            self._stop()  # the server stays up for the next run (LabRecorder)
        elif kind == "quit":
            self._stop()
            self.quit_requested.set()
        elif kind == "update":
            self._update()
        elif kind == "select_all":
            self.selection, self.select_all = [], True
            logger.info("control: selected all streams")
        elif kind == "select_none":
            self.selection, self.select_all = [], False
            logger.info("control: selection cleared")
        elif kind == "select_query":
            self._select(command.arg or "")
        elif kind == "filename":
            self._filename(command.options)
        elif kind == "auth":
            logger.info("control: ignoring auth line (already authenticated)")
        elif kind == "empty":
            logger.debug("control: empty line")
        else:
            logger.warning("control: unknown command %s", _short(command.arg or ""))

    def _start(self) -> None:
        manager = self.manager
        if manager.state is State.RECORDING:
            logger.warning("control: start ignored, already recording")
            return
        if manager.state is State.ERROR:
            logger.warning("control: leaving the failed session before starting")
            manager.reset()
        pending = self.finisher.pending
        if pending:
            logger.info(
                "control: start records now; the processing of %s continues meanwhile",
                ", ".join(p.name for p in pending),
            )
        if manager.state is not State.ACTIVE:
            name = session_name_from_fields(self.fields) or self.default_name
            self._create_session(name)
            logger.info("control: created session %s", manager.session_dir)
        streams = None if self.select_all or not self.selection else self.selection
        try:
            manager.start_recording(
                None if streams is None else list(streams), **self.recorder_options
            )
        except LslSessionError as exc:
            logger.error("control: start failed: %s", exc)
            return
        logger.info(
            "control: recording %s into %s",
            streams or "all streams",
            manager.session_dir,
        )
        if streams is None and manager.recorder is not None:
            logger.warning("control: %s", all_streams_line(manager.recorder))
        self._missing = missing_required(manager.recorder, self.required)
        if self._missing:
            message = log_missing_required(manager, self._missing)
            (logger.warning if self.allow_missing else logger.error)(
                "control: %s", message
            )

    def stop(self) -> None:
        """End a running recording and its session, as a remote ``stop`` does."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        manager = self.manager
        folder = manager.session_dir
        unmatched: list[str] = []
        if manager.state is State.RECORDING:
            unmatched = manager.stop_recording().get("unmatched_queries") or []
            if self.allow_missing:
                tolerated = {r.query for r in self.required}
                unmatched = [q for q in unmatched if q not in tolerated]
            for query in unmatched:
                logger.error(
                    "control: query %r never matched any stream: nothing recorded"
                    " from it",
                    query,
                )
        if manager.state is State.ACTIVE:
            manager.end_session(process=False)
            self.runs.append(
                {
                    "session_dir": str(folder),
                    "outcome": "ended",
                    "unmatched": unmatched,
                    "missing_required": [] if self.allow_missing else self._missing,
                }
            )
            self._missing = []
            logger.info("control: run %d ended: %s", len(self.runs), folder)
            self.finisher.submit(folder)
        elif manager.state is State.ERROR and folder is not None:
            meta = manager.current_session or {}
            runs = meta.get("recording", {}).get("runs", [])
            reason = (runs[-1].get("error") if runs else None) or "recording failed"
            self.runs.append({"session_dir": str(folder), "outcome": "error"})
            logger.error(
                "control: run %d failed: %s (%s)", len(self.runs), reason, folder
            )
            manager.reset()
            self.finisher.submit(folder, outcome="error")
        else:
            logger.info("control: stop with nothing to stop (%s)", manager.state.value)

    def _update(self) -> None:
        import pylsl

        self._updated = list(pylsl.resolve_streams(wait_time=self.resolve_wait))
        logger.info("control: %d stream(s) visible", len(self.visible_infos()))

    def visible_infos(self) -> list[Any]:
        """The streams visible now (continuous resolve plus the last ``update``)."""
        import pylsl

        if self._resolver is None:
            self._resolver = pylsl.ContinuousResolver(forget_after=5.0)
        infos = {i.uid(): i for i in self._updated}
        infos.update((i.uid(), i) for i in self._resolver.results())
        return sorted(infos.values(), key=sort_key)

    def _select(self, query: str) -> None:
        try:
            validate_query(query)
        except LslSessionError as exc:
            logger.error("control: selection unchanged: %s", exc)
            return
        self.select_all = False
        if query not in self.selection:
            self.selection.append(query)
        logger.info("control: selection is now %s", self.selection)
        infos = self.visible_infos()
        if not any(matches_query(i, query) for i in infos):
            logger.warning("control: select: %s (yet)", explain_unmatched(query, infos))

    def _filename(self, options: dict[str, str]) -> None:
        if not options:
            logger.warning("control: filename line without {option:value} groups")
        for option, value in options.items():
            if option not in FILENAME_OPTIONS:
                logger.warning("control: unknown filename option %s", _short(option))
            elif option == "root":
                self._set_root(value)
            elif option == "template":
                self.template = value
                logger.info(
                    "control: template %s ignored: sessions use the enforced tree",
                    _short(value),
                )
            else:
                self.fields[option] = value
        logger.info(
            "control: next session name %s", session_name_from_fields(self.fields)
        )

    def _set_root(self, value: str) -> None:
        text = value.strip()
        if not text or (os.name != "nt" and _WINDOWS_PATH.match(text)):
            logger.error(
                "control: unusable recordings root %s; root unchanged", _short(text)
            )
            return
        path = Path(text).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            logger.error("control: cannot create recordings root %s: %s", path, exc)
            return
        if not os.access(path, os.W_OK | os.X_OK):
            logger.error("control: recordings root %s is not writable", path)
            return
        self.manager.base_recordings_dir = path
        logger.info("control: recordings root for the next session: %s", path)

    # ----------------------------------------------------------------- status
    def _status(self) -> bytes:
        manager = self.manager
        recorder = manager.recorder
        live: dict[str, Any] = {}
        if recorder is not None and hasattr(recorder, "status"):
            try:
                live = recorder.status()
            except Exception:
                logger.exception("control: recorder status failed")
        session_dir = manager.session_dir
        try:
            infos = self.visible_infos()
        except Exception:
            logger.exception("control: resolving the visible streams failed")
            infos = []
        if recorder is not None and hasattr(recorder, "unmatched_queries"):
            unmatched = recorder.unmatched_queries()
        else:
            unmatched = [
                q for q in self.selection if not any(matches_query(i, q) for i in infos)
            ]
        body = {
            "state": manager.state.value,
            "session_dir": None if session_dir is None else str(session_dir),
            "root": str(manager.base_recordings_dir),
            "next_session_name": session_name_from_fields(self.fields)
            or self.default_name,
            "file": live.get("file"),
            "bytes": live.get("bytes", 0),
            "elapsed_s": live.get("elapsed_s"),
            "streams": live.get("streams", []),
            "selection": list(self.selection),
            "select_all": self.select_all,
            "filename": dict(self.fields),
            "unmatched_selection": unmatched,
            "missing_required": list(self._missing),
            "visible": [stream_record(i) for i in infos],
            "runs": len(self.runs),
            "processing": [str(p) for p in self.finisher.pending],
        }
        return json.dumps(body, default=str).encode("utf-8") + b"\n"
