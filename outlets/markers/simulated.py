"""SyncMarkerPulser: the simulated stimulus program (sync pulses + stimulus onsets)."""

from __future__ import annotations

import logging
import threading

import pylsl

from outlets.markers.outlet import MarkerOutlet

logger = logging.getLogger(__name__)


class SyncMarkerPulser:
    """Push ``sync_pulse k`` at ``t0 + k * period`` and ``stimulus_onset k`` between.

    The simulated devices flash/pulse at the same times, so the sync check of the
    processed session lines every stream up against these markers.

    Parameters
    ----------
    outlet : MarkerOutlet
        Where the markers go (the caller owns and closes it).
    t0 : float
        LSL time of pulse 0 (no marker is pushed for it).
    period : float
        Seconds between sync pulses.
    """

    def __init__(self, outlet: MarkerOutlet, t0: float, period: float) -> None:
        if not period > 0:
            raise ValueError(f"The period must be positive, {period!r} is invalid.")
        self.outlet = outlet
        self.t0 = float(t0)
        self.period = float(period)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SyncMarkerPulser:
        """Start pushing in a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self._run, daemon=True, name="sync-markers"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop pushing (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        k = 1
        while True:
            when = self.t0 + k * self.period
            if self._stop.wait(max(0.0, when - pylsl.local_clock())):
                return
            self.outlet.push(f"sync_pulse {k}", when)
            if self._stop.wait(self.period / 2):
                return
            self.outlet.push(f"stimulus_onset {k}")
            k += 1
