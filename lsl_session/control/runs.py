"""The multi-run recording server behind ``record --control-port`` (LabRecorder's life cycle).

LabRecorder stays up between runs: ``stop`` closes the file and the app waits for
the next ``start``. `serve_runs` does the same: every remote ``start``…``stop``
is one complete session (named from the ``filename`` fields), post-processed in
the background while the next run may already record; the server ends only on
SIGINT/SIGTERM, its duration, or the ``quit`` extension.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lsl_session.control.finisher import DoneCallback, SessionFinisher
from lsl_session.control.server import ControlServer
from lsl_session.labrecorder import RequiredStream
from lsl_session.lifecycle import State

if TYPE_CHECKING:
    from lsl_session.manager import SessionManager
    from lsl_session.signals import StopRequest

logger = logging.getLogger(__name__)

#: Exit codes of the server: a run failed; a query/required stream never matched.
EXIT_RUN_FAILED = 1
EXIT_UNMATCHED = 2


@dataclass
class RunServerOptions:
    """How `serve_runs` records and reports (see ``record --help``)."""

    host: str = "127.0.0.1"
    port: int = 22345
    token: str | None = None
    queries: list[str] | None = None
    name: str | None = None
    process: bool = True
    duration: float | None = None
    status_interval: float = 5.0
    auto_start: bool = False
    recorder_options: dict[str, Any] = field(default_factory=dict)
    required: tuple[RequiredStream, ...] = ()
    allow_missing: bool = False
    fields: dict[str, str] = field(default_factory=dict)


def serve_runs(
    manager: SessionManager,
    stopper: StopRequest,
    options: RunServerOptions,
    *,
    create_session: Callable[[str | None], object] | None = None,
    on_listening: Callable[[tuple[str, int]], None] | None = None,
    on_session: DoneCallback | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Serve remote-control runs until a signal, the duration or ``quit``.

    Parameters
    ----------
    manager : SessionManager
        The manager every run's session is created in.
    stopper : StopRequest
        Set by SIGINT/SIGTERM (and by ``quit``); ends the server.
    options : RunServerOptions
        Bind address, initial selection, fallback name, processing, duration.
    create_session : callable | None
        ``create_session(name)`` for each run (default ``manager.create_session``).
    on_listening : callable | None
        ``on_listening((host, port))`` once the socket is bound.
    on_session : callable | None
        ``on_session(folder, outcome)`` when a run's session is done (processed,
        or ended when processing is off, or failed).
    on_status : callable | None
        ``on_status(recorder_status)`` every ``status_interval`` s while recording.

    Returns
    -------
    int
        0, `EXIT_RUN_FAILED` if a run's recording failed, or `EXIT_UNMATCHED`
        if a run ended with a query that never matched a stream.

    Notes
    -----
    At the end a running recording is stopped and its session ended like a
    remote ``stop``, and the server waits for the background processing of
    every ended run before returning.
    """
    finisher = SessionFinisher(process=options.process, on_done=on_session)
    control = ControlServer(
        manager,
        host=options.host,
        port=options.port,
        token=options.token,
        default_streams=options.queries,
        on_quit=stopper.set,
        default_name=options.name,
        recorder_options=options.recorder_options,
        create_session=create_session,
        finisher=finisher,
    )
    handler = control.handler
    handler.required, handler.allow_missing = options.required, options.allow_missing
    handler.fields.update(options.fields)
    control.start()
    handler.warm()  # the selected streams open now: the first start is instant
    try:
        if on_listening is not None:
            on_listening(control.address)
        if options.auto_start:
            logger.info("auto-start: starting the first run")
            control.handler.handle("start")
        _wait(manager, stopper, options, on_status)
    finally:
        control.stop()
        control.handler.stop()
    if stopper.signal_name:
        logger.warning("%s: server stopped", stopper.signal_name)
    pending = finisher.pending
    if pending:
        logger.warning(
            "waiting for the processing of %d session(s) (a second Ctrl-C stops"
            " waiting): %s",
            len(pending),
            ", ".join(p.name for p in pending),
        )
    # ended by one signal: a second one stops waiting; by quit/duration: any one
    limit = 2 if stopper.count else 1
    while not finisher.wait(0.2):
        if stopper.count >= limit:
            logger.error(
                "not waiting for processing; run `lsl-session process` on: %s",
                ", ".join(p.name for p in finisher.abandon()),
            )
            return EXIT_RUN_FAILED
    return exit_code(control.handler.runs)


def exit_code(runs: list[dict[str, Any]]) -> int:
    """The server's exit code from its runs (the worst one wins)."""
    if any(r.get("unmatched") or r.get("missing_required") for r in runs):
        return EXIT_UNMATCHED
    if any(r.get("outcome") == "error" for r in runs):
        return EXIT_RUN_FAILED
    return 0


def _wait(
    manager: SessionManager,
    stopper: StopRequest,
    options: RunServerOptions,
    on_status: Callable[[dict[str, Any]], None] | None,
) -> None:
    deadline = None if options.duration is None else time.monotonic() + options.duration
    next_status, shown = 0.0, None
    while not stopper.wait(0.2):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            logger.info("duration reached: server stopped")
            return
        recorder = manager.recorder
        if recorder is not shown:  # a new run: its first line one interval in
            shown, next_status = recorder, now + options.status_interval
        if (
            on_status is not None
            and recorder is not None
            and manager.state is State.RECORDING
            and now >= next_status
        ):
            on_status(recorder.status())
            next_status = now + options.status_interval
