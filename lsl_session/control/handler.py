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
from lsl_session.control.open_streams import OpenStreams
from lsl_session.control.protocol import (
    FILENAME_OPTIONS,
    MAX_QUERY,
    MAX_SELECTION,
    REPLY_OK,
    Command,
    ControlRefused,
    check_filename_options,
    error_reply,
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
    combine_queries,
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
    keep_streams_open : bool
        Keep the selected streams' inlets open and pulled between runs (see
        `OpenStreams`): a ``start`` records from its request time at once.

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
        keep_streams_open: bool = True,
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
        #: called with each ended run's entry, under the lock, before ``stop``
        #: replies (the control room's run counter)
        self.on_run_ended: Callable[[dict[str, Any]], None] | None = None
        self._resolver: Any = None
        self._lock = threading.Lock()
        #: keep the selected streams open between runs (instant start)
        self.keep_streams_open = keep_streams_open
        self.streams = OpenStreams(self.recorder_options)

    def handle(self, line: str, received: float | None = None) -> bytes:
        """Execute one line and return the bytes to send back.

        Parameters
        ----------
        line : str
            The line, without its newline.
        received : float | None
            ``pylsl.local_clock()`` when the line arrived: a ``start`` records
            what is stamped from then on, a ``stop`` cuts there. Default: now.

        Returns
        -------
        bytes
            ``b"OK"`` for every line that was carried out (also unknown ones,
            as LabRecorder); ``ERR <reason>\\n`` for a refused ``filename`` or
            ``select`` line and a failed command (nothing changed); ``status``
            answers one JSON line ending in ``\\n``.
        """
        command = parse_line(line)
        if command.kind == "status":
            return self._status()
        try:
            with self._lock:
                self._dispatch(command, received)
        except ControlRefused as exc:
            logger.error("control: refused %s: %s", _short(line, 60), exc)
            return error_reply(str(exc))
        except Exception as exc:
            logger.exception("control command %s failed", _short(line))
            return error_reply(f"{command.kind} failed: {type(exc).__name__}")
        return REPLY_OK

    # --------------------------------------------------------------- commands
    def received(self, line: str, received: float) -> None:
        """A line arrived (called at once by the transport, before it is queued).

        A ``stop`` cuts the running recording at ``received`` right away, so
        nothing stamped after the request is written into it while the line
        waits for its turn. Does nothing if another command is running.
        """
        if parse_line(line).kind not in ("stop", "quit"):
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            recorder = self.manager.recorder
            if self.manager.state is State.RECORDING and hasattr(recorder, "cut"):
                recorder.cut(received)
        finally:
            self._lock.release()

    def _dispatch(self, command: Command, received: float | None = None) -> None:
        kind = command.kind
        if kind == "start":
            self._start(received)
        elif kind == "stop":
            self._stop(received)  # the server stays up for the next run (LabRecorder)
        elif kind == "quit":
            self._stop(received)
            self.quit_requested.set()
        elif kind == "update":
            self._update()
        elif kind == "select_all":
            self.selection, self.select_all = [], True
            logger.info("control: selected all streams")
            self.warm()
        elif kind == "select_none":
            self.selection, self.select_all = [], False
            logger.info("control: selection cleared")
            self.warm()
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

    def _queries(self) -> list[str] | None:
        """The queries a ``start`` records now (None: every stream)."""
        return None if self.select_all or not self.selection else list(self.selection)

    def warm(self) -> None:
        """Resolve and open the selected streams now, so the first ``start`` is instant."""
        if self.keep_streams_open:
            self.streams.warm(self._queries())

    def close(self) -> None:
        """Stop a running recording (like ``stop``), then close the open streams."""
        with self._lock:
            self._stop()
            self.streams.close()

    def _start(self, received: float | None = None) -> None:
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
        streams = self._queries()
        options = dict(self.recorder_options)
        if self.keep_streams_open:
            options["pool"] = self.streams.pool_for(streams)
            options["start_at"] = self.streams.start_time(received)
        try:
            manager.start_recording(streams, **options)
        except LslSessionError as exc:
            raise ControlRefused(f"start failed: {exc}") from None
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

    def _stop(self, received: float | None = None) -> None:
        try:
            self._stop_run(received)
        finally:
            self.streams.stopped()  # the reply goes out now

    def _stop_run(self, received: float | None) -> None:
        manager = self.manager
        folder = manager.session_dir
        unmatched: list[str] = []
        if manager.state is State.RECORDING:
            cutoff = self.streams.cutoff(received)
            self.streams.stopping(cutoff)
            summary = manager.stop_recording(cutoff)
            unmatched = summary.get("unmatched_queries") or []
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
            session = manager.session
            if session is not None:  # its event outlet goes now, not in the next start
                threading.Thread(
                    target=session.logger.close, name="events-close", daemon=True
                ).start()
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
            if self.on_run_ended is not None:
                self.on_run_ended(self.runs[-1])
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
        """Add ``query`` to the selection (bounded: `MAX_SELECTION` × `MAX_QUERY`)."""
        if len(query) > MAX_QUERY:
            raise ControlRefused(
                f"select: query of {len(query)} characters, at most {MAX_QUERY}"
            )
        if query in self.selection:
            self.select_all = False
            logger.info("control: %s already selected", _short(query))
            return
        if len(self.selection) >= MAX_SELECTION:
            raise ControlRefused(
                f"select: the selection holds {MAX_SELECTION} queries already"
                " (the most accepted); send 'select none' first"
            )
        try:
            validate_query(query)
            combine_queries([*self.selection, query, *(r.query for r in self.required)])
        except LslSessionError as exc:
            raise ControlRefused(f"select: {exc}; selection unchanged") from None
        self.select_all = False
        self.selection.append(query)
        logger.info(
            "control: selected %s (%d quer%s)",
            _short(query),
            len(self.selection),
            "y" if len(self.selection) == 1 else "ies",
        )
        if self.keep_streams_open:
            self.streams.warm(self._queries())
        infos = self.visible_infos()
        if not any(matches_query(i, query) for i in infos):
            logger.warning("control: select: %s (yet)", explain_unmatched(query, infos))

    def _filename(self, options: dict[str, str]) -> None:
        """Apply ``filename`` fields; a bad value refuses the whole line (nothing set)."""
        if not options:
            logger.warning("control: filename line without {option:value} groups")
        check_filename_options(options)
        root = options.get("root")
        if root is not None:
            self._set_root(root)
        unknown = [o for o in options if o not in FILENAME_OPTIONS]
        if unknown:
            logger.warning(
                "control: %d unknown filename option(s) ignored: %s",
                len(unknown),
                _short(", ".join(unknown[:10])),
            )
        for option, value in options.items():
            if option not in FILENAME_OPTIONS:
                continue
            elif option == "root":
                continue
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
            raise ControlRefused(f"filename: unusable recordings root {_short(text)}")
        try:
            path = Path(text).expanduser()
            path.mkdir(parents=True, exist_ok=True)
        except (OSError, RuntimeError) as exc:
            raise ControlRefused(
                f"filename: cannot create recordings root {_short(text)}: {exc}"
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ControlRefused(
                f"filename: recordings root {_short(text)} is not writable"
            )
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
            "open_streams": self.streams.open_names(),
        }
        return json.dumps(body, default=str).encode("utf-8") + b"\n"
