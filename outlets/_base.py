"""BaseOutlet: start/stop lifecycle, stop event and error-reporting worker thread."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from lsl_session.errors import DeviceError

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

logger = logging.getLogger(__name__)


class OutletError(DeviceError):
    """An outlet could not open its source, or was used after it was closed."""


class BaseOutlet(ABC):
    """Lifecycle shared by the outlets: ``start``, ``stop``, context manager.

    Subclasses implement :meth:`_open` (acquire resources, called by :meth:`start` in
    the caller's thread, so errors surface immediately; it must clean up after itself
    when it raises) and :meth:`_close` (release them, called exactly once by
    :meth:`stop`). A subclass that acquires everything in its constructor sets
    ``self._opened = True`` there. Subclasses with continuous work
    override :meth:`_run`, which then runs in a daemon worker thread and must return
    soon after :attr:`stop_requested` becomes true.

    Notes
    -----
    An exception raised by the worker is logged, stored, and re-raised by the first
    call to :meth:`stop`. :meth:`stop` can be called any number of times; calls after
    the first do nothing. An outlet cannot be restarted once stopped.
    """

    #: Whether :meth:`_run` runs in a worker thread. Subclasses that only react to
    #: calls (e.g. a marker outlet) set this to False.
    _threaded: bool = True

    def __init__(self) -> None:
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._state_lock = threading.Lock()
        self._started = False
        self._opened = False
        self._stopped = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Ask the worker to finish without waiting for it (signal-handler safe)."""
        self._stop_event.set()

    def start(self) -> Self:
        """Open the source and start the worker thread.

        Returns
        -------
        self
            The started outlet, for chaining.

        Raises
        ------
        OutletError
            If the outlet was already started or stopped, or its source cannot be
            opened.
        """
        with self._state_lock:
            if self._started or self._stopped:
                raise OutletError(f"{type(self).__name__} can only be started once.")
            self._started = True
        if not self._opened:
            self._open()
            self._opened = True
        if self._threaded:
            self._thread = threading.Thread(
                target=self._worker, name=f"{type(self).__name__}-worker", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> Self:
        """Stop the worker, release resources and re-raise a worker error.

        Parameters
        ----------
        timeout : float
            Seconds to wait for the worker thread to finish.

        Returns
        -------
        self
            The stopped outlet.

        Raises
        ------
        OutletError
            If the worker did not finish within ``timeout``.
        Exception
            Whatever the worker raised (first call only).
        """
        with self._state_lock:
            if self._stopped:
                return self
            self._stopped = True
        self._stop_event.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - a hung source
                raise OutletError(
                    f"{type(self).__name__} worker did not stop within {timeout} s."
                )
        if self._opened:
            self._close()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the worker has finished on its own or after a stop request.

        Parameters
        ----------
        timeout : float | None
            Seconds to wait; None waits forever (in short, signal-friendly steps).

        Returns
        -------
        bool
            True if the worker is no longer running.
        """
        thread = self._thread
        if thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while thread.is_alive():
            step = 0.1
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    break
            thread.join(step)
        return not thread.is_alive()

    # --- to implement -----------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Acquire the source and the LSL outlet (caller's thread)."""

    @abstractmethod
    def _close(self) -> None:
        """Release everything acquired by :meth:`_open` (called once)."""

    def _run(self) -> None:  # pragma: no cover - overridden by threaded outlets
        """Do the continuous work until :attr:`stop_requested` is true."""
        self._stop_event.wait()

    # --- private ----------------------------------------------------------------

    def _worker(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # re-raised by stop()
            logger.exception("%s worker failed", type(self).__name__)
            self._error = exc
            self._stop_event.set()

    # ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` while the worker is alive."""
        if not self._started or self._stopped:
            return False
        return self._thread is None or self._thread.is_alive()

    @property
    def stop_requested(self) -> bool:
        """True once a stop was requested or the worker failed."""
        return self._stop_event.is_set()
