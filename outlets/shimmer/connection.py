"""A pyshimmer connection whose every call has a timeout.

pyshimmer 1.0.0 has no timeouts: a call waits forever for an ACK that may never
come, and its reader thread dies silently on unexpected bytes. Here every call
runs in a helper thread that is abandoned after a timeout, and the reader
thread can be checked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import serial
from pyshimmer import ShimmerBluetooth
from pyshimmer.bluetooth.bt_commands import ShimmerCommand

from lsl_session.errors import DeviceError

logger = logging.getLogger(__name__)


def _quiet_pyshimmer() -> None:
    """Send pyshimmer's bare ``print`` calls to our log instead of stdout.

    pyshimmer 1.0.0 prints ``Read loop exciting after cancel request`` (and a
    serial-timeout warning) to stdout, where they would corrupt a command's
    output (its last stdout line is a path). A module-level ``print`` in those
    modules shadows the built-in for them only.
    """
    import pyshimmer.bluetooth.bt_api as bt_api
    import pyshimmer.serial_base as serial_base

    def log_print(*args: object, **_kwargs: object) -> None:
        logger.debug("pyshimmer: %s", " ".join(str(a) for a in args)[:300])

    for module in (bt_api, serial_base):
        module.print = log_print  # type: ignore[attr-defined]


_quiet_pyshimmer()


class ShimmerError(DeviceError):
    """A Shimmer could not be reached or stopped answering."""


class ByteCommand(ShimmerCommand):
    """A command pyshimmer 1.0.0 lacks: opcode + one byte, ACK only."""

    def __init__(self, opcode: int, value: int) -> None:
        self._opcode, self._value = opcode, value

    def send(self, ser: Any) -> None:
        ser.write_command(self._opcode, "<B", self._value)


def call_with_timeout(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """Run ``fn(*args)`` in a daemon thread and wait at most ``timeout`` s.

    Raises
    ------
    ShimmerError
        If the call does not return in time (the thread is abandoned; a later
        ``shutdown()`` releases it).
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn(*args))
        except BaseException as exc:  # re-raised in the caller
            error.append(exc)

    name = getattr(fn, "__name__", "call")
    th = threading.Thread(target=run, name=f"shimmer-{name}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise ShimmerError(f"Shimmer did not answer {name}() within {timeout:g} s")
    if error:
        raise error[0]
    return result[0] if result else None


class ShimmerConnection:
    """One serial port + one ShimmerBluetooth (pyshimmer threads start once)."""

    def __init__(self, port: str, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        try:
            self.serial = serial.Serial(port, 115200, timeout=None)
        except (serial.SerialException, OSError) as exc:
            code = getattr(exc, "errno", None)
            reason = os.strerror(code) if isinstance(code, int) else str(exc)
            reason = reason.splitlines()[0] if reason else type(exc).__name__
            raise ShimmerError(f"cannot open Shimmer port {port!r}: {reason}") from None
        try:
            # Stop a device left streaming by an earlier connection, then discard
            # whatever is in flight so pyshimmer starts on a frame boundary.
            self.serial.write(b"\x20")
            time.sleep(0.15)
            self.serial.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            self.serial.close()
            raise ShimmerError(f"Shimmer port {port!r} failed: {exc}") from None
        self.shim = ShimmerBluetooth(self.serial)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return call_with_timeout(fn, *args, timeout=self.timeout)

    def reader_alive(self) -> bool:
        th = getattr(self.shim, "_thread", None)  # private in pyshimmer 1.0.0
        return th is None or th.is_alive()

    def close(self) -> None:
        try:
            call_with_timeout(self.shim.shutdown, timeout=self.timeout)
        except Exception as exc:  # best effort teardown
            logger.debug("Shimmer shutdown on %s failed: %s", self.port, exc)
            try:
                self.serial.close()
            except Exception:  # pragma: no cover
                pass
