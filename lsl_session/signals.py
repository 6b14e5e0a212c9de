"""SIGINT/SIGTERM as a stop request, so long-running commands finish cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by SIGINT/SIGTERM (or by code); remembers which signal arrived."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        #: signals received so far (a second one may mean "do not wait")
        self.count = 0

    def set(self) -> None:
        """Request a stop from code (a remote ``stop``, a duration, …)."""
        self.event.set()

    def is_set(self) -> bool:
        """True once a stop was requested."""
        return self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a stop request; True if one arrived."""
        return self.event.wait(timeout)


@contextlib.contextmanager
def stop_on_signals(
    callback: Callable[[], None] | None = None,
) -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a `StopRequest` for the duration of the block.

    The previous handlers are restored on exit. Outside the main thread (where
    Python cannot install handlers) the request is only set from code.

    Parameters
    ----------
    callback : callable | None
        Also called from the handler (e.g. an outlet's ``request_stop``).
    """
    request = StopRequest()

    def handle(signum: int, _frame: object) -> None:
        request.signal_name = signal.Signals(signum).name
        request.count += 1
        request.set()
        if callback is not None:
            callback()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
