"""The ``<device>_clock`` / ``_clock_exchanges`` outlets: hold until a recorder, bounds."""

from __future__ import annotations

import pylsl
from lsl_helpers import wait_until

from outlets.phone.clock import KNOT_FIELDS
from outlets.phone.clock_stream import ClockOutlets
from outlets.phone.streams import source_id


def _inlet(sid: str) -> pylsl.StreamInlet:
    infos = pylsl.resolve_byprop("source_id", sid, timeout=5)
    assert infos, sid
    inlet = pylsl.StreamInlet(infos[0], max_buflen=60)
    inlet.open_stream(timeout=5)
    return inlet


def _pull(inlet: pylsl.StreamInlet, n: int) -> list:
    rows: list = []

    def more() -> bool:
        chunk, _ = inlet.pull_chunk(timeout=0.0)
        rows.extend(chunk)
        return len(rows) >= n

    wait_until(more, timeout=5)
    return rows


def test_rows_from_before_the_recorder_reach_it_and_floods_are_capped(uid):
    dev = f"clk_{uid}"
    clock = ClockOutlets(dev)
    clock.open()
    for k in range(10):  # nobody listens yet: kept
        clock.push_exchange(1.0 + k, 101.0 + k, 101.0 + k, 1.002 + k, 1)
    clock.push_exchange(float("nan"), 1.0, 1.0, 1.0, 1)  # never recorded
    knot = dict.fromkeys(KNOT_FIELDS, 0.5)
    clock.push_knots([knot], 1)
    ex = _inlet(source_id(dev, "clock_exchanges"))
    knots = _inlet(source_id(dev, "clock"))
    assert wait_until(lambda: clock.exchanges.outlet.have_consumers())
    assert wait_until(lambda: clock.mapping.outlet.have_consumers())
    clock.push_exchange(20.0, 120.0, 120.0, 20.002, 1)
    clock.push_knots([knot], 1)
    rows = _pull(ex, 11)
    assert [r[0] for r in rows] == [1.0 + k for k in range(10)] + [20.0]
    assert len(rows[0]) == 5 and rows[0][4] == 1.0  # t1..t4, connection
    assert len(_pull(knots, 2)) == 2
    for k in range(1000):  # a phone flooding sync requests
        clock.push_exchange(30.0 + k, 130.0 + k, 130.0 + k, 30.002 + k, 1)
    assert clock.dropped >= 800
    assert clock.counts["clock_exchanges"] <= 11 + 200
    clock.close()
