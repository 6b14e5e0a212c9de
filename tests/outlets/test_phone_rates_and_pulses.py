"""Phones declare their sensor rates; the relay's sync flashes carry the lab's pulse id.

Real relay, real simulator over a real socket, real LSL outlets and inlets.
"""

from __future__ import annotations

import numpy as np
import pylsl
import pytest
from lsl_helpers import wait_until

from lsl_session.errors import DeviceError
from outlets.phone import PhoneRelay, PhoneSimulator
from outlets.phone.streams import source_id


def _info(sid: str) -> pylsl.StreamInfo:
    infos = pylsl.resolve_byprop("source_id", sid, timeout=5.0)
    assert infos, f"stream {sid} not found"
    return infos[0]


def test_declared_rates_become_the_outlets_nominal_rates(uid):
    ids = {"new": f"p64_{uid}", "slow": f"p51_{uid}", "old": f"pold_{uid}"}
    with PhoneRelay(tokens={d: "t" for d in ids.values()}) as relay:
        sims = [
            PhoneSimulator("127.0.0.1", relay.port, ids["new"], "t",
                           rates={"gsr": 64.0, "rgb_frames": 15.0}, seed=1),
            PhoneSimulator("127.0.0.1", relay.port, ids["slow"], "t",
                           rates={"gsr": 51.2}, seed=2),
            PhoneSimulator("127.0.0.1", relay.port, ids["old"], "t",
                           rates={"gsr": 64.0}, declare_rates=False, seed=3),
        ]  # fmt: skip
        try:
            for sim in sims:
                sim.start()
            rate = {
                (k, s): _info(source_id(d, s)).nominal_srate()
                for k, d in ids.items()
                for s in ("gsr", "rgb_frames", "motion")
            }
        finally:
            for sim in sims:
                sim.stop()
    assert rate[("new", "gsr")] == 64.0
    assert rate[("new", "rgb_frames")] == 15.0
    assert rate[("new", "motion")] == 100.0  # not declared: the typical rate
    assert rate[("slow", "gsr")] == pytest.approx(51.2)
    assert rate[("old", "gsr")] == 128.0  # an older app: the typical rate


@pytest.mark.parametrize(
    "rates", [{"gsr": 0}, {"gsr": -5}, {"events": 10}, {"gsr": "64"}, [64]]
)
def test_bad_declared_rates_are_refused_at_hello(uid, rates):
    device = f"bad_{uid}"
    with PhoneRelay(tokens={device: "t"}) as relay:
        sim = PhoneSimulator("127.0.0.1", relay.port, device, "t", seed=1)
        sim.declared = rates  # what a broken app would send
        with pytest.raises(DeviceError, match="bad_message"):  # fixed text
            sim.start()
        sim.stop()


def test_sync_flash_carries_the_pulse_id_and_flashes_at_the_lab_time(uid):
    device = f"flash_{uid}"
    with PhoneRelay(tokens={device: "t"}) as relay:
        sim = PhoneSimulator(
            "127.0.0.1", relay.port, device, "t", clock_offset=3600.0,
            drift_ppm=40.0, pulse_interval=None, jitter_ms=(1.0, 10.0), seed=4,
        ).start()  # fmt: skip
        try:
            assert relay.wait_ready(device)
            inlet = pylsl.StreamInlet(_info(source_id(device, "events")))
            inlet.open_stream(timeout=5)
            at = pylsl.local_clock() + 0.5
            acks = relay.send_sync_pulse(7, at).result(10)
            assert acks[device]["status"] == "ok"
            old = relay.sync_flash(pulse=None)  # an id-less flash: as before
            assert old[device]["status"] == "ok"
            got: list[tuple[str, float]] = []

            def two() -> bool:
                sample, stamp = inlet.pull_sample(timeout=0.1)
                if sample:
                    got.append((sample[0], stamp))
                return len(got) >= 2

            assert wait_until(two, 10)
        finally:
            sim.stop()
    labels = [g[0] for g in got]
    assert labels == ["sync_flash 7", "sync_flash"]
    # the phone flashed at the lab's time: its pulse's true time is `at`
    onset = [e[0] for e in sim.events if e[3] == 7]
    assert onset and abs(onset[0] - at) < 2e-3
    assert abs(got[0][1] - at) < 2e-3  # and the relay stamped it there
    assert np.isfinite(got[1][1])
