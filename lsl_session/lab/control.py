"""Remote control of a lab run (``record --config FILE --control-port P``).

A lab run records one session from its config, so of LabRecorder's commands
``stop`` (and ``quit``) end the recording — devices stop, uploads are awaited,
the session is processed — ``status`` answers one JSON line, and every other
command is acknowledged and logged as not applicable. Authentication, slots and
timeouts are the control socket's own (`lsl_session.control.ControlServer`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from lsl_session.control.protocol import REPLY_OK, parse_line

logger = logging.getLogger(__name__)


class LabControl:
    """Line handler of the control socket during a lab run.

    Parameters
    ----------
    stop : callable
        Ends the recording (the run's stop request).
    status : callable
        Returns the run's status as a JSON-serialisable dict.
    """

    def __init__(
        self, stop: Callable[[], None], status: Callable[[], dict[str, Any]]
    ) -> None:
        self._stop = stop
        self._status = status
        self.quit_requested = threading.Event()

    def handle(self, line: str, received: float | None = None) -> bytes:
        """Execute one line; reply ``OK`` (``status``: one JSON line)."""
        command = parse_line(line)
        if command.kind == "status":
            return (json.dumps(self._status(), default=str) + "\n").encode()
        if command.kind in ("stop", "quit"):
            logger.info("remote %s: ending the lab recording", command.kind)
            self._stop()
        elif command.kind not in ("empty", "auth"):
            logger.warning(
                "remote %s ignored: a lab run records its config's devices from"
                " start to stop (use stop to end it)",
                command.kind,
            )
        return REPLY_OK
