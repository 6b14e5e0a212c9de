"""SIGINT/SIGTERM as a stop request, so long-running commands finish cleanly.

The signal handler takes no lock: it only records the signal (plain attribute
writes) and writes one byte to a non-blocking wake-up pipe. A small thread reads
that pipe and sets the `threading.Event` the rest of the program waits on (and
runs the optional callback). Setting the Event from the handler itself could
deadlock: Python runs handlers in the main thread between bytecodes, possibly
while that thread holds the Event's own non-reentrant lock inside ``wait()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: byte written on the wake-up pipe by the handler (anything else ends the thread)
_SIGNAL_BYTE = b"s"
_CLOSE_BYTE = b"q"
#: Signals that arrived while deferred (`defer_signals`), before any stop block.
_EARLY: list[str] = []
#: The handlers `defer_signals` replaced, restored when a stop block ends.
_ORIGINAL: dict[int, object] = {}


def _remember(signum: int, _frame: object) -> None:
    """Deferring handler: only remember the signal (a list append, no lock)."""
    _EARLY.append(signal.Signals(signum).name)


def defer_signals() -> None:
    """Until the next `stop_on_signals` block, SIGINT/SIGTERM are only remembered.

    For commands whose stop is `stop_on_signals`: a Ctrl-C while they still
    import (numpy, matplotlib, liblsl) would otherwise raise inside a C
    extension's initialisation ("ImportError: initialization failed", a
    traceback). The remembered signal stops the block as soon as it starts.
    Main thread only; a no-op elsewhere.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        previous = signal.signal(sig, _remember)
        if previous is not _remember:
            _ORIGINAL[sig] = previous


class StopRequest:
    """Set by SIGINT/SIGTERM (or by code); remembers which signal arrived."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None
        #: signals received so far (a second one may mean "do not wait")
        self.count = 0
        #: set (a plain attribute write) by the signal handler
        self._signalled = False

    def set(self) -> None:
        """Request a stop from code (a remote ``stop``, a duration, …).

        Never call this from a signal handler (it takes the Event's lock).
        """
        self.event.set()

    def is_set(self) -> bool:
        """True once a stop was requested."""
        return self._signalled or self.event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a stop request; True if one arrived."""
        if self._signalled:
            return True
        return self.event.wait(timeout) or self._signalled


class _Waker:
    """The wake-up pipe and the thread that turns its bytes into ``set()``."""

    def __init__(
        self, request: StopRequest, callback: Callable[[], None] | None
    ) -> None:
        self.request = request
        self.callback = callback
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.thread = threading.Thread(
            target=self._run, name="stop-signals", daemon=True
        )
        self.thread.start()

    def handle(self, signum: int, _frame: object) -> None:
        """The signal handler: attribute writes and one non-blocking write."""
        request = self.request
        request.signal_name = signal.Signals(signum).name
        request.count += 1
        request._signalled = True
        with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
            os.write(self.write_fd, _SIGNAL_BYTE)

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except InterruptedError:  # pragma: no cover - PEP 475 retries
                continue
            except OSError:
                return
            if not data:
                return
            if _SIGNAL_BYTE in data:
                self.request.set()
                if self.callback is not None:
                    self.callback()
            if _CLOSE_BYTE in data:
                return

    def close(self) -> None:
        """End the thread and close the pipe."""
        os.set_blocking(self.write_fd, True)
        with contextlib.suppress(OSError):
            os.write(self.write_fd, _CLOSE_BYTE)
        self.thread.join(2.0)
        for fd in (self.write_fd, self.read_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


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
        Also called on a signal (e.g. an outlet's ``request_stop``), from the
        wake-up thread, not from the handler.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    waker = _Waker(request, callback)
    previous = {sig: signal.signal(sig, waker.handle) for sig in STOP_SIGNALS}
    while _EARLY:  # signals that came while deferred: a stop request now
        waker.handle(signal.Signals[_EARLY.pop(0)], None)
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            # never restore the deferring handler: later signals act normally
            signal.signal(
                sig, _ORIGINAL.pop(sig, handler) if handler is _remember else handler
            )  # type: ignore[arg-type]
        waker.close()
