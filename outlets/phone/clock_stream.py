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
clock. ``process`` re-maps the phone's streams from them (see
``lsl_session.processing.phone_remap``).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np
import pylsl

from outlets.phone.clock import KNOT_FIELDS
from outlets.phone.streams import source_id, stream_name

logger = logging.getLogger(__name__)

EXCHANGE_FIELDS = ("t1", "t2", "t3", "t4")
#: Exchanges buffered while the outlets do not exist yet.
MAX_EARLY_EXCHANGES = 512
_UNITS = {
    "slope": "s/s",
    "fit_slope": "s/s",
    "exchanges_used": "count",
    "resets": "count",
    "step": "flag",
    "connection": "count",
}


def _info(
    device_id: str, key: str, stype: str, fields: tuple[str, ...], text: str
) -> pylsl.StreamInfo:
    labels = (*fields, "connection")
    info = pylsl.StreamInfo(
        stream_name(device_id, key),
        stype,
        len(labels),
        pylsl.IRREGULAR_RATE,
        pylsl.cf_double64,
        source_id(device_id, key),
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


class ClockOutlets:
    """The ``<device>_clock`` and ``<device>_clock_exchanges`` outlets of a phone.

    Exchanges pushed before `open` are buffered (bounded) and pushed then.
    Used from the relay's event loop only.
    """

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.mapping: pylsl.StreamOutlet | None = None
        self.exchanges: pylsl.StreamOutlet | None = None
        self._early: deque[tuple[float, ...]] = deque(maxlen=MAX_EARLY_EXCHANGES)
        self.counts = {"clock": 0, "clock_exchanges": 0}

    def open(self) -> None:
        """Create both outlets (once) and push the buffered exchanges."""
        if self.mapping is not None:
            return
        self.mapping = pylsl.StreamOutlet(
            _info(
                self.device_id,
                "clock",
                "ClockMapping",
                KNOT_FIELDS,
                "knots of the live phone-clock mapping: on [phone_time_k, "
                "phone_time_k+1) lsl = p + offset_s + slope * (p - phone_time)",
            ),
            0,
            360,
        )
        self.exchanges = pylsl.StreamOutlet(
            _info(
                self.device_id,
                "clock_exchanges",
                "ClockExchanges",
                EXCHANGE_FIELDS,
                "four-timestamp exchanges: t1/t4 phone clock, t2/t3 relay LSL clock",
            ),
            0,
            360,
        )
        early, self._early = list(self._early), deque(maxlen=MAX_EARLY_EXCHANGES)
        for row in early:
            self._push_exchange(row)

    def push_exchange(
        self, t1: float, t2: float, t3: float, t4: float, connection: int
    ) -> None:
        """Record one completed exchange."""
        row = (t1, t2, t3, t4, float(connection))
        if self.exchanges is None:
            self._early.append(row)
        else:
            self._push_exchange(row)

    def _push_exchange(self, row: tuple[float, ...]) -> None:
        self.exchanges.push_sample(list(row), row[1])
        self.counts["clock_exchanges"] += 1

    def push_knots(self, knots: list[dict[str, Any]], connection: int) -> None:
        """Record knots of the live mapping (dropped before `open`)."""
        if self.mapping is None or not knots:
            return
        rows = np.array(
            [[k[f] for f in KNOT_FIELDS] + [float(connection)] for k in knots]
        )
        stamps = rows[:, 0] + rows[:, 1]
        for row, ts in zip(rows, stamps, strict=True):
            self.mapping.push_sample(row.tolist(), float(ts))
        self.counts["clock"] += len(rows)

    def source_ids(self) -> dict[str, str]:
        """Stream key → source id."""
        return {k: source_id(self.device_id, k) for k in ("clock", "clock_exchanges")}

    def close(self) -> None:
        """Destroy the outlets; safe to call twice."""
        self.mapping = self.exchanges = None
