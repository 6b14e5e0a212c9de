"""``lsl-session outlet simulate``: the simulated devices come up on LSL and stop cleanly."""

from __future__ import annotations

import subprocess
import sys

import pylsl

from lsl_session.lab.devices import SyncClock


def test_simulate_command_publishes_streams(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsl_session",
            "outlet",
            "simulate",
            "--phones",
            "1",
            "--no-webcam",
            "--duration",
            "6",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    line = ""
    while proc.poll() is None and "simulating:" not in line:
        line = proc.stderr.readline()
    source_ids = line.split("simulating:", 1)[1].strip().split(", ")
    # a rig of its own (#23): lsl_session/<host>-demo-sim-<hex>/<device>/...
    (shimmer,) = [s for s in source_ids if s.endswith("/shimmer_1")]
    rig = shimmer.split("/")[1]
    assert "-demo-sim-" in rig
    assert all(s.startswith(f"lsl_session/{rig}/") for s in source_ids)
    assert any(s.startswith(f"lsl_session/{rig}/phone_1/") for s in source_ids)
    found = pylsl.resolve_byprop("source_id", shimmer, 1, 5.0)
    assert found and found[0].type() == "GSR"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]


def test_pulse_schedule_is_shared():
    clock = SyncClock(period=4.0, t0=100.0)
    assert clock.pulse_times(112.0) == [104.0, 108.0, 112.0]
