"""Real pylsl outlets that push known data with explicit stamps, for recorder tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pylsl


def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01
) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class RegularSource:
    """Push ``value = sample index`` on every channel at ``srate`` with exact stamps.

    The pushed stamps are kept so a test can compare the file against them.
    """

    def __init__(
        self,
        name: str,
        source_id: str,
        *,
        channels: int = 32,
        srate: float = 1000.0,
        fmt: int = pylsl.cf_float32,
        stype: str = "EEG",
        chunk: float = 0.01,
        lag: float = 0.0,
    ) -> None:
        self.info = pylsl.StreamInfo(name, stype, channels, srate, fmt, source_id)
        #: data arrives this late: each sample is pushed ``lag`` s after its stamp
        self.lag = lag
        self.srate = srate
        self.channels = channels
        self.dtype = {
            pylsl.cf_float32: np.float32,
            pylsl.cf_int32: np.int32,
            pylsl.cf_double64: np.float64,
            pylsl.cf_int16: np.int16,
        }[fmt]
        self.chunk = chunk
        self.outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(self.info)
        self.stamps: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.index = 0
        self.t0 = pylsl.local_clock()

    def start(self) -> RegularSource:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = pylsl.local_clock()
            n = int((now - self.t0) * self.srate) - self.index
            if n > 0:
                idx = np.arange(self.index, self.index + n)
                data = np.repeat(idx[:, None], self.channels, axis=1).astype(self.dtype)
                ts = self.t0 + idx / self.srate - self.lag
                self.outlet.push_chunk(data, ts)
                self.stamps.append(ts)
                self.index += n
            time.sleep(self.chunk)

    def silence(self) -> None:
        """Stop pushing but keep the outlet (a stream gone silent)."""
        self._stop.set()
        self._thread.join()

    def pause(self) -> None:
        """Stop pushing and destroy the outlet (the stream vanishes)."""
        self._stop.set()
        self._thread.join()
        self.outlet = None
        self.paused_index = self.index

    def resume(self) -> None:
        """Re-create the outlet with the same source_id and continue the index."""
        self.outlet = pylsl.StreamOutlet(self.info)
        self._stop.clear()
        self.t0 = pylsl.local_clock() - self.index / self.srate
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> np.ndarray:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.outlet = None
        return np.concatenate(self.stamps) if self.stamps else np.zeros(0)


class MarkerSource:
    """Push a string marker every ``interval`` seconds."""

    def __init__(
        self, name: str, source_id: str | None, interval: float = 0.25
    ) -> None:
        self.info = pylsl.StreamInfo(
            name, "Markers", 1, 0, pylsl.cf_string, source_id or ""
        )
        self.outlet = pylsl.StreamOutlet(self.info)
        self.interval = interval
        self.sent: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MarkerSource:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.interval):
            label = f"marker {i} é" + ("x" * (300 if i % 7 == 0 else 0))
            ts = pylsl.local_clock()
            self.outlet.push_sample([label], ts)
            self.sent.append((label, ts))
            i += 1

    def stop(self) -> list[tuple[str, float]]:
        self._stop.set()
        self._thread.join()
        return self.sent
