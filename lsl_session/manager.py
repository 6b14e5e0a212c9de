"""SessionManager: the seed's public API driving the lifecycle of one session (SPEC §5)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from lsl_session.catalog import owner_record
from lsl_session.errors import LslSessionError, SessionStateError
from lsl_session.events import SessionLogger
from lsl_session.fsutil import release_reserve, reserve_space
from lsl_session.layout import RESERVE_FILE
from lsl_session.lifecycle import State, check_transition
from lsl_session.metadata import now_iso
from lsl_session.session import (
    FINISHED,
    Session,
    create_session_folder,
    remove_helper_files,
)

logger = logging.getLogger(__name__)

DEFAULT_ROOT_ENV = "LSL_SESSION_ROOT"
#: Hidden file holding disk space while recording, freed for the final writes.
RESERVE_NAME = RESERVE_FILE
#: Its size: room for the summary, the error event and the status when disk is full.
RESERVE_BYTES = 2_000_000


class RecorderLike(Protocol):
    """What the manager needs from a recorder (see `lsl_session.recorder`)."""

    def start(self) -> None:
        """Resolve streams and begin writing; raise on failure."""

    def stop(self) -> dict[str, Any]:
        """Drain, write footers, close; return the recording summary.

        A recorder may take ``stop(cutoff)``: the stop request's LSL time.
        """


RecorderFactory = Callable[..., RecorderLike]


def default_root() -> Path:
    """The recordings root: ``$LSL_SESSION_ROOT`` or ``./recordings``."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV) or "recordings")


def _default_recorder_factory(session: Session, **kwargs: Any) -> RecorderLike:
    from lsl_session.recorder import SessionRecorder

    return SessionRecorder(session, **kwargs)


def _merge_streams(
    known: list[dict[str, Any]], new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per-stream totals over every recording of a session (keyed by name, source)."""
    merged = {(s["name"], s.get("source_id")): dict(s) for s in known}
    for s in new:
        key = (s["name"], s.get("source_id"))
        if key not in merged:
            merged[key] = dict(s)
            continue
        total = merged[key]
        total["sample_count"] = total.get("sample_count", 0) + s.get("sample_count", 0)
        total["clock_offsets"] = total.get("clock_offsets", 0) + s.get(
            "clock_offsets", 0
        )
        total["first_timestamp"] = total.get("first_timestamp") or s.get(
            "first_timestamp"
        )
        total["last_timestamp"] = s.get("last_timestamp") or total.get("last_timestamp")
    return list(merged.values())


EMPTY_LINE = "nothing recorded: the session ended empty (its files are kept)"


def recorded_anything(meta: dict[str, Any]) -> bool:
    """True when a stream other than the session's own event stream has samples."""
    session_id = meta.get("session_id")
    streams = (meta.get("recording") or {}).get("streams") or []

    def own(s: dict[str, Any]) -> bool:  # lsl_session/[<rig>/]<session_id>/events
        sid = str(s.get("source_id") or "")
        return s.get("name") == f"{session_id}_events" or (
            sid.startswith("lsl_session/") and sid.endswith(f"{session_id}/events")
        )

    return any(
        (s.get("sample_count") or 0) > 0 and not own(s)
        for s in streams
        if isinstance(s, dict)
    )


class SessionManager:
    """Create, record, end and process sessions under one recordings root.

    Parameters
    ----------
    base_recordings_dir : Path | str | None
        The recordings root (default ``$LSL_SESSION_ROOT`` or ``./recordings``).
    recorder_factory : callable | None
        ``factory(session, streams=..., on_error=...)`` returning a recorder;
        the default is `lsl_session.recorder.SessionRecorder`.
    lsl_events : bool
        Publish the event log on the session's LSL marker stream.
    rig : str | None
        The rig identity in that stream's source_id (default: the host name,
        see `lsl_session.rig`).

    Notes
    -----
    Every public method either completes its transition or raises
    `SessionStateError` before touching metadata or the log. Methods are
    serialised by an internal lock, so a UI thread and a remote-control thread
    can share one manager.
    """

    def __init__(
        self,
        base_recordings_dir: Path | str | None = None,
        *,
        recorder_factory: RecorderFactory | None = None,
        lsl_events: bool = True,
        rig: str | None = None,
    ) -> None:
        from lsl_session.rig import default_rig

        #: The rig identity in the session event stream's source_id.
        self.rig = rig or default_rig()
        self.base_recordings_dir = Path(base_recordings_dir or default_root())
        self._recorder_factory = recorder_factory or _default_recorder_factory
        self._lsl_events = lsl_events
        self._lock = threading.RLock()
        self._state = State.IDLE
        self._session: Session | None = None
        self._recorder: RecorderLike | None = None
        #: The message of the last recorder failure (disk full, I/O error).
        self.last_error: str | None = None
        self._observers: list[Callable[[State, State], None]] = []
        self.unfinished_sessions: list[Path] = self.find_unfinished_sessions()
        if self.unfinished_sessions:
            logger.warning(
                "%d unfinished session(s) under %s; run `lsl-session recover`: %s",
                len(self.unfinished_sessions),
                self.base_recordings_dir,
                ", ".join(p.name for p in self.unfinished_sessions),
            )

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> State:
        """The manager's lifecycle state."""
        return self._state

    @property
    def session(self) -> Session | None:
        """The current session, if any."""
        return self._session

    @property
    def session_dir(self) -> Path | None:
        """The current session folder, if any."""
        return self._session.root if self._session else None

    @property
    def current_session(self) -> dict[str, Any] | None:
        """The current session's metadata (read from disk)."""
        return self._session.metadata() if self._session else None

    @property
    def logger(self) -> SessionLogger:
        """The current session's event logger."""
        if self._session is None:
            raise SessionStateError("no session: call create_session() first")
        return self._session.logger

    @property
    def recorder(self) -> RecorderLike | None:
        """The running recorder, if recording."""
        return self._recorder

    def on_state_change(self, callback: Callable[[State, State], None]) -> None:
        """Call ``callback(old, new)`` after every state change."""
        self._observers.append(callback)

    def _set_state(self, new: State) -> None:
        old, self._state = self._state, new
        for callback in list(self._observers):
            try:
                callback(old, new)
            except Exception:
                logger.exception("state observer failed")

    def _require_session(self, action: str) -> Session:
        if self._session is None:
            raise SessionStateError(f"cannot {action}: no session has been created")
        return self._session

    # -------------------------------------------------------------- sessions
    def create_session(self, session_name: str | None = None) -> dict[str, Any]:
        """Create a session folder with the whole §2 tree and make it current.

        Returns
        -------
        dict
            The session metadata.
        """
        with self._lock:
            check_transition(self._state, State.CREATING, "create a session")
            previous = self._state
            self._set_state(State.CREATING)
            folder = None
            try:
                folder = create_session_folder(
                    self.base_recordings_dir, session_name, datetime.now()
                )
                if self._session is not None:
                    self._session.close()
                self._session = Session(
                    folder, lsl_outlet=self._lsl_events, rig=self.rig
                )
                self._session.update(lambda m: m.__setitem__("owner", owner_record()))
                self._session.log_event("session_start", {"name": session_name})
            except BaseException:
                # a folder that exists but could not be initialised is an error
                # the user resets from; without a folder nothing changed
                self._set_state(State.ERROR if folder is not None else previous)
                raise
            self._set_state(State.ACTIVE)
            return self._session.metadata()

    def open_session(self, folder: Path | str) -> dict[str, Any]:
        """Make an existing session folder current, to record more into it.

        A second recording continues in the next free ``_partNNN.xdf``. The
        folder may live outside the recordings root.

        Parameters
        ----------
        folder : Path | str
            A session folder (``lsl-session new`` prints one).

        Returns
        -------
        dict
            The session metadata.

        Raises
        ------
        SessionNotFoundError
            If ``folder`` is not a session folder.
        SessionStateError
            If another live process owns the session, or it is unfinished after a
            crash (``lsl-session recover`` first) or failed.
        """
        from lsl_session.catalog import effective_status, owner_alive

        with self._lock:
            check_transition(self._state, State.CREATING, "open a session")
            session = Session(folder, lsl_outlet=self._lsl_events, rig=self.rig)
            previous = self._state
            self._set_state(State.CREATING)
            try:
                meta = session.metadata()
                if owner_alive(meta):
                    pid = meta["owner"].get("pid")
                    raise SessionStateError(
                        f"cannot open {session.root}: process {pid} is using it"
                    )
                status = effective_status(meta)
                if status not in ("active", "completed", "empty", "recovered"):
                    hint = (
                        " (run `lsl-session recover` first)"
                        if status == "interrupted"
                        else ""
                    )
                    raise SessionStateError(
                        f"cannot open {session.root}: the session is {status}{hint}"
                    )
                session.set_status(State.ACTIVE.value)
                session.update(lambda m: m.__setitem__("owner", owner_record()))
                session.log_event("session_resume", {"previous_status": status})
            except BaseException:
                session.close()
                self._set_state(previous)
                raise
            if self._session is not None:
                self._session.close()
            self._session = session
            self._set_state(State.ACTIVE)
            return session.metadata()

    def add_device_to_session(
        self, device_id: str, device_type: str, capabilities: list[str]
    ) -> dict[str, Any]:
        """Register a device in the current session and log ``device_connected``."""
        with self._lock:
            session = self._require_session("add a device")
            if self._state not in (State.ACTIVE, State.RECORDING):
                raise SessionStateError(
                    f"cannot add a device: the session is {self._state.value}"
                )
            info = session.add_device(device_id, device_type, capabilities)
            session.log_event(
                "device_connected",
                {"device_id": device_id, "device_type": device_type},
            )
            return info

    def add_file_to_session(
        self,
        device_id: str,
        file_type: str,
        file_path: Path | str,
        file_size: int | None = None,
    ) -> dict[str, Any]:
        """Register a file of the current session (size and sha256 recorded)."""
        with self._lock:
            session = self._require_session("add a file")
            entry = session.add_file(device_id, file_type, file_path, file_size)
            session.log_event(
                "file_received",
                {
                    "device_id": device_id,
                    "file_type": file_type,
                    "file_path": entry["file_path"],
                    "sha256": entry["sha256"],
                },
            )
            return entry

    # ------------------------------------------------------------- recording
    def start_recording(
        self, streams: list[str] | None = None, **recorder_options: Any
    ) -> dict[str, Any]:
        """Start recording LSL streams into the session's XDF file.

        Parameters
        ----------
        streams : list of str | None
            LSL queries (``name="EEG"``); None records every visible stream.
        **recorder_options
            Passed to the recorder factory (split size, flush interval, …).

        Raises
        ------
        SessionStateError
            Unless the session is active.
        RecorderError
            If the recorder cannot start; the session stays active.
        """
        with self._lock:
            session = self._require_session("start recording")
            check_transition(self._state, State.RECORDING, "start recording")
            recorder = self._recorder_factory(
                session,
                streams=streams,
                on_error=self._on_recorder_error,
                **recorder_options,
            )
            reserve_space(session.root / RESERVE_NAME, RESERVE_BYTES)
            try:
                recorder.start()
            except BaseException:
                release_reserve(session.root / RESERVE_NAME)
                raise
            self.last_error = None
            try:
                session.set_status(State.RECORDING.value)
                session.log_event("start_record", {"streams": streams or "all"})
            except BaseException:
                recorder.stop()  # never leave a recorder running unaccounted for
                release_reserve(session.root / RESERVE_NAME)
                with contextlib.suppress(Exception):
                    session.set_status(State.ACTIVE.value)
                raise
            self._recorder = recorder
            self._set_state(State.RECORDING)
            return session.metadata()

    def stop_recording(self, cutoff: float | None = None) -> dict[str, Any]:
        """Stop the recorder (drain, footers), store the summary, log ``stop_record``.

        Parameters
        ----------
        cutoff : float | None
            The stop request's ``pylsl.local_clock()`` time (a remote ``stop``
            line's arrival); default: now. Samples stamped from then on are not
            in this recording.
        """
        with self._lock:
            session = self._require_session("stop recording")
            check_transition(self._state, State.ACTIVE, "stop recording")
            if self._state is not State.RECORDING:
                raise SessionStateError(
                    f"cannot stop recording: the session is {self._state.value}"
                )
            summary = self._finish_recorder(cutoff)
            session.set_status(State.ACTIVE.value)
            session.log_event(
                "stop_record",
                {
                    "xdf_files": summary.get("xdf_files", []),
                    "samples": {
                        s["name"]: s.get("sample_count", 0)
                        for s in summary.get("streams", [])
                    },
                },
            )
            for query in summary.get("unmatched_queries") or []:
                message = f"query {query!r} never matched any stream: nothing recorded"
                logger.info("%s", message)
                session.log_event(
                    "error", {"category": "session", "message": message, "query": query}
                )
            self._set_state(State.ACTIVE)
            return summary

    def _finish_recorder(self, cutoff: float | None = None) -> dict[str, Any]:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return {}
        try:
            summary = recorder.stop() if cutoff is None else recorder.stop(cutoff)
        finally:
            if self._session is not None:
                release_reserve(self._session.root / RESERVE_NAME)
        self._store_summary(summary)
        return summary

    def _store_summary(self, summary: dict[str, Any]) -> None:
        session = self._session
        if session is None or not summary:
            return

        def change(meta: dict[str, Any]) -> None:
            rec = meta.setdefault("recording", {})
            files = rec.setdefault("xdf_files", [])
            for name in summary.get("xdf_files", []):
                if name not in files:
                    files.append(name)
            rec["streams"] = _merge_streams(
                rec.get("streams", []), summary.get("streams", [])
            )
            rec.setdefault("runs", []).append(dict(summary))
            for key in (
                "start_lsl_time",
                "stop_lsl_time",
                "cutoff_lsl_time",
                "stop_grace_s",
                "start_time",
                "stop_time",
            ):
                if key in summary:
                    rec[key] = summary[key]

        session.update(change)

    def _on_recorder_error(self, message: str, summary: dict[str, Any]) -> None:
        """Called by the recorder thread when the recording ended on an error.

        The state changes first; each disk write is then attempted on its own,
        because the error is often a full disk.
        """
        with self._lock:
            if self._session is None:
                return
            self.last_error = message
            # the space held since the start: room for the writes below
            release_reserve(self._session.root / RESERVE_NAME)
            # not recording any more: stop_recording() already stored the summary
            ended_here = self._state is State.RECORDING
            if ended_here:
                self._recorder = None
                self._set_state(State.ERROR)
            session = self._session
            steps = [
                lambda: session.log_event(
                    "error", {"category": "system", "message": message}
                )
            ]
            if ended_here:
                steps.insert(0, lambda: self._store_summary(summary))
                steps.append(lambda: session.set_status(State.ERROR.value))
            for step in steps:
                try:
                    step()
                except Exception as exc:  # e.g. still no space: say so, no traceback
                    logger.error("could not record the recorder error: %s", exc)
                    logger.debug("recorder error bookkeeping failed", exc_info=True)

    # ------------------------------------------------------------ finishing
    def end_session(self, *, process: bool = True, **process_options: Any) -> dict:
        """End the session: log ``session_end``, process it, mark it completed.

        A session in which nothing was recorded (no recording, or no sample of any
        stream but the session's own event stream) is not processed and ends
        ``empty``; its files are kept.

        Raises
        ------
        SessionStateError
            Unless the session is active (stop recording first).
        """
        with self._lock:
            session = self._require_session("end the session")
            check_transition(self._state, State.PROCESSING, "end the session")
            meta = session.metadata()
            end = now_iso()
            start = datetime.fromisoformat(meta["start_time"])
            duration = (datetime.fromisoformat(end) - start).total_seconds()
            if not recorded_anything(meta):
                session.log_event(
                    "session_end", {"duration_s": round(duration, 6), "empty": True}
                )
                session.set_status(
                    State.EMPTY.value, end_time=end, duration_s=round(duration, 6)
                )
                self._set_state(State.EMPTY)
                logger.info("nothing was recorded: the session ends empty")
                session.logger.close()  # its event stream leaves the network
                return session.metadata()
            session.set_status(
                State.PROCESSING.value, end_time=end, duration_s=round(duration, 6)
            )
            session.log_event("session_end", {"duration_s": round(duration, 6)})
            self._set_state(State.PROCESSING)
            if process:
                try:
                    self._run_processing(session, **process_options)
                except BaseException:
                    self._set_state(State.ERROR)
                    with contextlib.suppress(Exception):
                        session.set_status(State.ERROR.value)
                    raise
            session.set_status(State.COMPLETED.value)
            self._set_state(State.COMPLETED)
            # a finished session's event stream leaves the network (events of a
            # later processing still go to its log)
            session.logger.close()
            return session.metadata()

    def trigger_post_session_processing(
        self,
        session_id: str | None = None,
        enable_hand_segmentation: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Run post-processing (SPEC §8) on the current or a named session.

        Returns
        -------
        dict
            The processing report (what ran, outputs, errors).
        """
        with self._lock:
            if session_id is None:
                session = self._require_session("process")
                if self._state is State.RECORDING:
                    raise SessionStateError("cannot process while recording")
            else:
                session = Session(self.base_recordings_dir / session_id)
            return self._run_processing(
                session, hand_segmentation=enable_hand_segmentation, **options
            )

    def _run_processing(self, session: Session, **options: Any) -> dict[str, Any]:
        from lsl_session.processing.pipeline import process_session

        return process_session(session, **options)

    def reset(self) -> None:
        """Leave the error (or completed) state and return to idle."""
        with self._lock:
            check_transition(self._state, State.IDLE, "reset")
            if self._recorder is not None:
                try:
                    self._finish_recorder()
                except Exception:
                    logger.exception("recorder failed while resetting")
            if self._session is not None:
                self._release(self._session)
            self._session = None
            self._set_state(State.IDLE)

    def close(self) -> None:
        """Stop a running recording and release the session; safe to call twice."""
        with self._lock:
            if self._state is State.RECORDING:
                self.stop_recording()
            if self._session is not None:
                self._release(self._session)

    @staticmethod
    def _release(session: Session) -> None:
        """Give up ownership (it no longer looks interrupted) and close."""
        release_reserve(session.root / RESERVE_NAME)
        status = None
        try:
            status = session.update(lambda m: m.pop("owner", None)).get("status")
        except Exception as exc:
            logger.error("could not release %s: %s", session.root, exc)
            logger.debug("release failed", exc_info=True)
        session.close()
        if status in FINISHED:
            remove_helper_files(session.root)

    # --------------------------------------------------------------- lookup
    def list_sessions(self) -> list[dict[str, Any]]:
        """Summaries of every session folder under the root (see `lsl_session.catalog`)."""
        from lsl_session.catalog import list_sessions

        return list_sessions(self.base_recordings_dir)

    def find_unfinished_sessions(self) -> list[Path]:
        """Session folders left active/recording/processing by a crash."""
        from lsl_session.catalog import find_unfinished

        try:
            return find_unfinished(self.base_recordings_dir)
        except LslSessionError:
            return []
