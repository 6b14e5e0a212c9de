"""SyncMarkerPulser: the simulated stimulus program (sync pulses + stimulus onsets)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pylsl

from outlets.markers.outlet import MarkerOutlet

logger = logging.getLogger(__name__)


class SyncMarkerPulser:
    """Push ``sync_pulse k`` at ``t0 + k * period`` and ``stimulus_onset k`` between.

    ``k`` is the pulse's id. ``announce(k, when)`` is called ``lead`` seconds
    before each pulse, so devices that must be told (phones, through the
    relay's ``sync_flash`` with the id) can show pulse ``k`` at ``when``; it
    must not block. The sync check of the processed session matches each
    device's pulses to these markers by id.

    Parameters
    ----------
    outlet : MarkerOutlet
        Where the markers go (the caller owns and closes it).
    t0 : float
        LSL time of pulse 0 (no marker is pushed for it).
    period : float
        Seconds between sync pulses.
    announce : callable | None
        ``announce(k, when)`` before each pulse.
    lead : float
        Seconds between the announcement and the pulse (at most half a period).
    """

    def __init__(
        self,
        outlet: MarkerOutlet,
        t0: float,
        period: float,
        *,
        announce: Callable[[int, float], None] | None = None,
        lead: float = 0.5,
    ) -> None:
        if not period > 0:
            raise ValueError(f"The period must be positive, {period!r} is invalid.")
        self.outlet = outlet
        self.t0 = float(t0)
        self.period = float(period)
        self.announce = announce
        self.lead = min(float(lead), self.period / 2)
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
            if self.announce is not None:
                if self._stop.wait(max(0.0, when - self.lead - pylsl.local_clock())):
                    return
                try:
                    self.announce(k, when)
                except Exception:
                    logger.exception("announcing sync pulse %d failed", k)
            if self._stop.wait(max(0.0, when - pylsl.local_clock())):
                return
            self.outlet.push(f"sync_pulse {k}", when)
            if self._stop.wait(self.period / 2):
                return
            self.outlet.push(f"stimulus_onset {k}")
            k += 1
