"""The relay's record of events: history, observers, session writes, error limits.

Session writes (events, devices, files) run in a single worker thread, in order,
so the event loop never waits for an fsync. Errors go through a `LogLimiter`:
cut to 200 characters, at most a few per code and peer per window, the rest
counted and logged as one summary per code.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pylsl

from lsl_session.session import Session
from outlets.phone.guard import LogLimiter
from outlets.phone.limits import RelayLimits, cut

logger = logging.getLogger(__name__)

#: Entries kept in `RelayLog.history`.
HISTORY = 10000


class RelayLog:
    """Where relay events go: `history`, observers and the session's event log.

    Parameters
    ----------
    limits : RelayLimits
        The error rate limits (``error_burst``, ``error_total``, ``error_window_s``).
    """

    def __init__(self, limits: RelayLimits) -> None:
        self.limits = limits
        self.history: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=HISTORY
        )
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        self.session: Session | None = None
        self._io = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="relay-io"
        )
        self._limiter = LogLimiter(
            burst=limits.error_burst,
            total=limits.error_total,
            window_s=limits.error_window_s,
            max_keys=limits.max_limiter_keys,
        )

    def log(self, event: str, details: dict[str, Any]) -> None:
        """Record an event: history, observers, and the session's log."""
        entry = {"event": event, "lsl_time": pylsl.local_clock(), **details}
        self.history.append(entry)
        for cb in list(self.observers):
            try:
                cb(entry)
            except Exception:  # pragma: no cover - observer bug
                logger.exception("relay observer failed")
        self.session_call("log_event", event, details)

    def error(self, host: str, details: dict[str, Any]) -> bool:
        """Record an ``error`` event unless rate-limited (per code and host).

        Returns
        -------
        bool
            True if the error was recorded.
        """
        code = cut(details.get("code"), 40)
        if not self._limiter.admit((code, host), pylsl.local_clock()):
            return False
        details = {**details, "message": cut(details.get("message", ""))}
        logger.warning(
            "%s (%s): %s %s",
            details.get("address", host),
            details.get("device_id"),
            code,
            details["message"],
        )
        self.log("error", details)
        return True

    def summarise(self, *, everything: bool) -> None:
        """Log one summary ``error`` event per code for the errors held back."""
        per_code: dict[str, list[int]] = {}
        for (code, _host), n in self._limiter.due(
            pylsl.local_clock(), everything=everything
        ):
            entry = per_code.setdefault(code, [0, 0])
            entry[0] += n
            entry[1] += 1
        for code, (n, hosts) in sorted(per_code.items()):
            text = f"{n} more {code} errors from {hosts} hosts not shown"
            logger.warning("%s", text)
            self.log(
                "error",
                {
                    "category": "device",
                    "code": code,
                    "summary": True,
                    "message": text,
                    "suppressed": n,
                    "hosts": hosts,
                    "window_s": self.limits.error_window_s,
                },
            )

    def session_call(self, method: str, *args: Any) -> None:
        """Run ``session.<method>(*args)`` in the ordered session-I/O thread."""
        if self.session is not None:
            try:
                self._io.submit(self._session_call, self.session, method, *args)
            except RuntimeError:  # executor shut down: relay stopping
                logger.warning("session %s dropped: relay stopped", method)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every session write queued so far is done."""
        with contextlib.suppress(RuntimeError):  # shut down: nothing queued
            self._io.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Finish the queued session writes and stop the I/O thread."""
        self._io.shutdown(wait=True)

    @staticmethod
    def _session_call(session: Session, method: str, *args: Any) -> None:
        try:
            if method == "clock_sync":
                device_id, quality = args

                def change(meta: dict[str, Any]) -> None:
                    dev = meta.get("devices", {}).get(device_id)
                    if dev is not None:
                        dev["clock_sync"] = quality

                session.update(change)
            else:
                getattr(session, method)(*args)
        except Exception:
            logger.exception("session %s failed", method)
