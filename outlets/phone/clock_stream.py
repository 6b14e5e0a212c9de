"""The clock evidence of one phone as two LSL streams, so the XDF carries it.

- ``<device>_clock`` (type ``ClockMapping``): one sample per knot of the relay's
  live mapping (`outlets.phone.clock`): on ``[phone_time_k, phone_time_k+1)`` the
  relay stamped samples with ``lsl = p + offset_s + slope · (p − phone_time)``.
  Also the fit behind it (``fit_offset_s``, ``fit_slope``), ``uncertainty_s``
  (half the best RTT in the window), ``band_s``, ``exchanges_used``,
  ``rtt_min_s``, ``resets`` (clock steps so far), ``step`` (1 at the knot where a
  step was applied) and ``connection`` (counts the phone's connections).
- ``<device>_clock_exchanges`` (type ``ClockExchanges``): every completed
  four-timestamp exchange ``t1, t2, t3, t4`` (phone, LSL, LSL, phone clock) and
  ``connection``, stamped with ``t2``.

Both are irregular ``double64`` streams with explicit stamps on the relay's LSL
clock. While an outlet has no consumer its rows are kept (the last
`HELD_KNOTS` knots, `HELD_EXCHANGES` exchanges, about a minute) and pushed when a
recorder attaches: the phone's own streams hold their first samples the same way
(``streams.py``), and those samples were stamped with knots from before the
recorder came. ``process`` re-maps the phone's streams from them (see
``lsl_session.processing.phone_remap``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Any

import pylsl

from outlets.phone.clock import KNOT_FIELDS
from outlets.phone.streams import source_id, stream_name

logger = logging.getLogger(__name__)

EXCHANGE_FIELDS = ("t1", "t2", "t3", "t4")
#: Rows kept while an outlet has no consumer (~1 min at 4 knots, 16 exchanges/s).
HELD_KNOTS = 256
HELD_EXCHANGES = 1024
#: Exchanges recorded per second at most (the schedule asks for 16-50): a phone
#: that floods sync requests cannot grow the recording without bound.
MAX_EXCHANGES_PER_S = 100.0
_UNITS = {
    "slope": "s/s",
    "fit_slope": "s/s",
    "exchanges_used": "count",
    "resets": "count",
    "step": "flag",
    "connection": "count",
}


def _info(
    device_id: str,
    key: str,
    stype: str,
    fields: tuple[str, ...],
    text: str,
    rig: str | None = None,
) -> pylsl.StreamInfo:
    labels = (*fields, "connection")
    info = pylsl.StreamInfo(
        stream_name(device_id, key),
        stype,
        len(labels),
        pylsl.IRREGULAR_RATE,
        pylsl.cf_double64,
        source_id(device_id, key, rig),
    )
    desc = info.desc()
    channels = desc.append_child("channels")
    for label in labels:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", _UNITS.get(label, "s"))
        ch.append_child_value("type", "clock")
    acq = desc.append_child("acquisition")
    acq.append_child_value("device_id", device_id)
    acq.append_child_value("relay", "lsl_session phone relay")
    s = desc.append_child("synchronization")
    # not "ntp4-envelope": these stamps are the relay's own clock, not mapped
    s.append_child_value("method", "relay-clock-evidence")
    s.append_child_value("description", text)
    return info


class _HeldOutlet:
    """An outlet that keeps its last rows while nobody listens, then pushes them."""

    def __init__(self, info: pylsl.StreamInfo, keep: int) -> None:
        self.outlet = pylsl.StreamOutlet(info, 0, 360)
        self._held: deque[tuple[list[float], float]] = deque(maxlen=keep)
        self.count = 0

    def push(self, rows: list[tuple[list[float], float]]) -> None:
        if not self.outlet.have_consumers():
            self._held.extend(rows)
            return
        held, self._held = list(self._held), deque(maxlen=self._held.maxlen)
        for row, stamp in (*held, *rows):
            self.outlet.push_sample(row, stamp)
            self.count += 1


class ClockOutlets:
    """The ``<device>_clock`` and ``<device>_clock_exchanges`` outlets of a phone.

    Used from the relay's event loop only.
    """

    def __init__(self, device_id: str, rig: str | None = None) -> None:
        self.device_id = device_id
        self.rig = rig
        self.mapping: _HeldOutlet | None = None
        self.exchanges: _HeldOutlet | None = None
        self._budget = MAX_EXCHANGES_PER_S
        self._budget_t = time.monotonic()
        self.dropped = 0

    def open(self) -> None:
        """Create both outlets (once)."""
        if self.mapping is not None:
            return
        self.mapping = _HeldOutlet(
            _info(
                self.device_id,
                "clock",
                "ClockMapping",
                KNOT_FIELDS,
                "knots of the live phone-clock mapping: on [phone_time_k, "
                "phone_time_k+1) lsl = p + offset_s + slope * (p - phone_time)",
                self.rig,
            ),
            HELD_KNOTS,
        )
        self.exchanges = _HeldOutlet(
            _info(
                self.device_id,
                "clock_exchanges",
                "ClockExchanges",
                EXCHANGE_FIELDS,
                "four-timestamp exchanges: t1/t4 phone clock, t2/t3 relay LSL clock",
                self.rig,
            ),
            HELD_EXCHANGES,
        )

    @property
    def counts(self) -> dict[str, int]:
        """Rows pushed to a consumer per stream key."""
        return {
            "clock": self.mapping.count if self.mapping else 0,
            "clock_exchanges": self.exchanges.count if self.exchanges else 0,
        }

    def push_exchange(
        self, t1: float, t2: float, t3: float, t4: float, connection: int
    ) -> None:
        """Record one completed exchange (dropped before `open`, if not finite, or
        beyond `MAX_EXCHANGES_PER_S`)."""
        if self.exchanges is None or not all(map(math.isfinite, (t1, t2, t3, t4))):
            return
        now = time.monotonic()
        self._budget = min(
            MAX_EXCHANGES_PER_S,
            self._budget + (now - self._budget_t) * MAX_EXCHANGES_PER_S,
        )
        self._budget_t = now
        if self._budget < 1.0:
            self.dropped += 1
            return
        self._budget -= 1.0
        self.exchanges.push([([t1, t2, t3, t4, float(connection)], t2)])

    def push_knots(self, knots: list[dict[str, Any]], connection: int) -> None:
        """Record knots of the live mapping (dropped before `open`)."""
        if self.mapping is None or not knots:
            return
        rows = [
            ([float(k[f]) for f in KNOT_FIELDS] + [float(connection)],
             float(k["phone_time"] + k["offset_s"]))
            for k in knots
        ]  # fmt: skip
        self.mapping.push(rows)

    def source_ids(self) -> dict[str, str]:
        """Stream key → source id."""
        keys = ("clock", "clock_exchanges")
        return {k: source_id(self.device_id, k, self.rig) for k in keys}

    def close(self) -> None:
        """Destroy the outlets; safe to call twice."""
        self.mapping = self.exchanges = None
