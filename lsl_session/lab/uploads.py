"""Waiting at stop for the files the phones announced (``stop_record`` acks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

#: Announced files kept per phone at most (a phone's ack is untrusted input).
MAX_ANNOUNCED = 64


class UploadTracker:
    """Match announced uploads against the relay's ``file_received`` events.

    A phone announces its files in the ``stop_record`` ack
    (``"uploads": [{"file_type": "rgb"}, …]``, see docs/phone-protocol.md); a
    phone that announces nothing is still waited for while an upload it offered
    is in progress.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._expected: dict[str, list[str]] = {}

    def on_relay_event(self, entry: dict[str, Any]) -> None:
        """Relay observer: remember received files and upload offers."""
        event = entry.get("event")
        with self._lock:
            if event == "file_received":
                self._received.append(entry)

    def announce(self, acks: dict[str, dict[str, Any]]) -> None:
        """Read the announced uploads from the ``stop_record`` acks."""
        with self._lock:
            for device_id, ack in acks.items():
                uploads = ack.get("uploads")
                if not isinstance(uploads, list):
                    continue
                types = [
                    str(u.get("file_type"))[:32]
                    for u in uploads[:MAX_ANNOUNCED]
                    if isinstance(u, dict)
                ]
                self._expected[device_id] = types

    def missing(self) -> dict[str, list[str]]:
        """Announced files not received yet, per device."""
        with self._lock:
            out = {}
            for device_id, types in self._expected.items():
                got = [
                    e.get("file_type")
                    for e in self._received
                    if e.get("device_id") == device_id
                ]
                left = list(types)
                for file_type in got:
                    if file_type in left:
                        left.remove(file_type)
                if left:
                    out[device_id] = left
            return out

    def received(self) -> list[dict[str, Any]]:
        """The ``file_received`` entries seen so far."""
        with self._lock:
            return list(self._received)

    def expected_count(self) -> int:
        """Number of files announced in total."""
        with self._lock:
            return sum(len(t) for t in self._expected.values())

    def wait(
        self,
        timeout: float,
        *,
        busy: Callable[[], bool] = lambda: False,
        progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, list[str]]:
        """Wait until every announced file arrived (and ``busy()`` is false).

        Returns
        -------
        dict
            What is still missing after ``timeout`` (empty when complete).
        """
        deadline = time.monotonic() + timeout
        total = self.expected_count()
        shown = -1
        while True:
            missing = self.missing()
            done = total - sum(len(v) for v in missing.values())
            if progress is not None and done != shown:
                progress(done, total)
                shown = done
            if not missing and not busy():
                return {}
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return missing
            time.sleep(0.1)
