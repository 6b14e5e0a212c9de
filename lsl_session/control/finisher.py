"""Post-process ended runs one at a time in the background, so the next run can start."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: ``on_done(folder, outcome)``; outcome is ``completed``, ``recorded`` (not
#: processed), ``processing_failed`` or ``error`` (the recording itself failed).
DoneCallback = Callable[[Path, str], None]

#: Ended runs waiting for processing; a ``start`` beyond this waits (it is never
#: dropped) because each queued run holds no memory beyond its folder name.
MAX_PENDING = 1000


def process_ended_session(folder: Path, **options: Any) -> str:
    """Post-process an ended session folder and set its status; return the outcome.

    The folder status is ``processing`` while it runs, then ``completed`` (also
    when some processing step failed: the recording is complete and
    ``lsl-session process`` can be re-run), or ``error`` if processing could
    not run at all.
    """
    from lsl_session.processing.pipeline import process_session
    from lsl_session.session import Session

    session = Session(folder)
    try:
        session.set_status("processing")
        try:
            run = process_session(session, **options)
        except BaseException:
            session.set_status("error")
            raise
        session.set_status("completed")
        return "completed" if run.get("status") == "ok" else "processing_failed"
    finally:
        session.close()


def _set_status(folder: Path, status: str) -> None:
    from lsl_session.metadata import update_metadata

    try:
        update_metadata(folder, lambda meta: meta.__setitem__("status", status))
    except Exception:
        logger.exception("could not set %s to %s", folder.name, status)


class SessionFinisher:
    """A single background worker that post-processes ended sessions in order.

    Parameters
    ----------
    process : bool
        Post-process each submitted folder; without it a folder is reported
        done at once.
    on_done : callable | None
        ``on_done(folder, outcome)`` after each folder (from the worker thread).
    process_options : dict | None
        Passed to `lsl_session.processing.pipeline.process_session`.
    process_fn : callable | None
        ``process_fn(folder, **process_options) -> outcome``; default
        `process_ended_session`.

    Notes
    -----
    Processing runs while the next run records (the recorder's liblsl buffers
    absorb any scheduling delay), so a ``start`` right after ``stop`` is never
    delayed by the previous run's processing.
    """

    def __init__(
        self,
        *,
        process: bool = True,
        on_done: DoneCallback | None = None,
        process_options: dict[str, Any] | None = None,
        process_fn: Callable[..., str] | None = None,
    ) -> None:
        self.process = process
        self._process_fn = process_fn or process_ended_session
        self.on_done = on_done
        self.process_options = dict(process_options or {})
        self._queue: queue.Queue[Path | None] = queue.Queue(MAX_PENDING)
        self._pending: list[Path] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.outcomes: list[tuple[Path, str]] = []

    @property
    def pending(self) -> list[Path]:
        """Folders queued or being processed, oldest first."""
        with self._lock:
            return list(self._pending)

    def submit(self, folder: Path, outcome: str | None = None) -> None:
        """Queue an ended session folder.

        Parameters
        ----------
        folder : Path
            The session folder.
        outcome : str | None
            Report this outcome without processing (e.g. ``error`` for a run
            whose recording failed); by default the folder is processed when
            ``process`` is set, else reported as ``recorded``.
        """
        if outcome is None and not self.process:
            outcome = "recorded"
        if outcome is not None:
            self._report(folder, outcome)
            return
        _set_status(folder, "processing")  # queued counts as processing
        with self._lock:
            self._pending.append(folder)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="run-processing", daemon=True
                )
                self._thread.start()
        if len(self._pending) > 1:
            logger.info(
                "processing of %s queued behind %d other session(s)",
                folder.name,
                len(self._pending) - 1,
            )
        self._queue.put(folder)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted folder is done; True if none is pending."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)

    def abandon(self) -> list[Path]:
        """Give up on the pending folders (the process is exiting); return them.

        Each gets a ``processing_end`` event with status ``interrupted``; its
        status stays ``processing``, so ``lsl-session list``/``recover`` show it
        and ``lsl-session process`` can finish it.
        """
        from lsl_session.session import Session

        pending = self.pending
        for folder in pending:
            try:
                session = Session(folder)
                try:
                    session.log_event(
                        "processing_end",
                        {"status": "interrupted", "errors": ["interrupted"]},
                    )
                finally:
                    session.close()
            except Exception:
                logger.exception("could not mark %s interrupted", folder)
        return pending

    def _work(self) -> None:
        while True:
            folder = self._queue.get()
            if folder is None:
                return
            logger.info("processing %s", folder.name)
            try:
                outcome = self._process_fn(folder, **self.process_options)
            except Exception as exc:
                logger.error("processing %s failed: %s", folder.name, exc)
                outcome = "processing_failed"
            self._report(folder, outcome)
            with self._idle:
                self._pending.remove(folder)
                self._idle.notify_all()

    def _report(self, folder: Path, outcome: str) -> None:
        self.outcomes.append((folder, outcome))
        if self.on_done is not None:
            try:
                self.on_done(folder, outcome)
            except Exception:
                logger.exception("run report for %s failed", folder)
