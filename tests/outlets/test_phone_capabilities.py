"""Phone streams follow the capabilities of each (re)connection (SPEC §10)."""

from __future__ import annotations

import os

from lsl_helpers import wait_until

from outlets.phone import PhoneRelay, PhoneSimulator


def _connect(relay: PhoneRelay, device: str, caps: tuple[str, ...]) -> PhoneSimulator:
    sim = PhoneSimulator(
        "127.0.0.1", relay.port, device, "t", capabilities=caps, jitter_ms=(1, 5)
    ).start()
    assert relay.wait_ready(device, timeout=10)
    return sim


def test_reconnect_with_more_or_fewer_capabilities(tmp_path):
    device = f"caps_{os.getpid()}"
    with PhoneRelay(tokens={device: "t"}) as relay:
        sim = _connect(relay, device, ("gsr_data",))
        assert sim.welcome["streams"] == ["gsr", "events"]
        assert set(relay.source_ids(device)) == {"gsr", "events"}
        sim.stop()
        assert wait_until(lambda: relay.connected() == [], 5)

        sim = _connect(relay, device, ("gsr_data", "motion_data"))  # one more
        assert sim.welcome["streams"] == ["motion", "gsr", "events"]
        assert set(relay.source_ids(device)) == {"motion", "gsr", "events"}
        outlets = relay.devices[device].outlets
        assert wait_until(lambda: outlets.counts["motion"] > 0, 5)
        sim.stop()
        assert wait_until(lambda: relay.connected() == [], 5)

        gsr_before = outlets.counts["gsr"]
        sim = _connect(relay, device, ("motion_data",))  # one fewer
        assert sim.welcome["streams"] == ["motion", "events"]
        # the gsr outlet stays (same source_id, idle) for when the capability returns
        assert relay.devices[device].outlets is outlets
        assert set(relay.source_ids(device)) == {"motion", "gsr", "events"}
        motion_before = outlets.counts["motion"]
        assert wait_until(lambda: outlets.counts["motion"] > motion_before + 50, 5)
        assert outlets.counts["gsr"] == gsr_before
        sim.stop()
