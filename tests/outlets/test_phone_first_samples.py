"""No first-second loss: a recorder running before a phone connects gets every sample.

The recorder is ``lsl-session record`` in its own process, started before the phone;
the relay and the simulated phone run here, so the phone's ground truth (every sample
it generated and sent) is known exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pylsl
import pyxdf
from lsl_helpers import wait_until

from outlets.phone import PhoneRelay, PhoneSimulator
from outlets.phone.streams import PhoneOutlets


def _start_recorder(root: Path, query: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        # started before its device: --allow-missing records and waits for it
        # (without it, a query matching nothing ends record before it starts)
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--stream", query, "--no-process", "--allow-missing"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = ""
    while proc.poll() is None and "recording into" not in line:
        line = proc.stderr.readline()
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    return proc


def _stop_recorder(proc: subprocess.Popen) -> Path:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 2), err[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    return folder / f"{folder.name}.xdf"


def test_recorder_started_before_the_phone_records_every_sample(tmp_path):
    device = f"first_{os.getpid()}"
    recorder = _start_recorder(
        tmp_path, f"starts-with(source_id, 'lsl_session/{device}/')"
    )
    try:
        with PhoneRelay(tokens={device: "t"}) as relay:
            sim = PhoneSimulator(
                "127.0.0.1", relay.port, device, "t",
                clock_offset=1000.0, drift_ppm=30, jitter_ms=(1, 10),
                pulse_interval=1.0, seed=3,
            ).start()  # fmt: skip
            assert relay.wait_ready(device, timeout=10)
            wait_until(lambda: False, timeout=3.0)  # stream a while
            sim.stop()  # flushes everything it generated, then bye
            sent = {s: len(sim.truth(s)[0]) for s in sim.streams}
            sent["events"] = len(sim.events)
            wait_until(
                lambda: all(
                    relay.devices[device].outlets.counts.get(s) == n
                    for s, n in sent.items()
                ),
                timeout=5,
            )
            wait_until(lambda: False, timeout=1.5)  # the recorder drains
    finally:
        xdf = _stop_recorder(recorder)
    streams, _ = pyxdf.load_xdf(str(xdf), dejitter_timestamps=False)
    recorded = {
        s["info"]["name"][0].removeprefix(f"{device}_"): len(s["time_stamps"])
        for s in streams
        if s["info"]["name"][0].startswith(device)
        and s["info"]["type"][0] not in ("ClockMapping", "ClockExchanges")
    }
    assert all(n > 0 for n in sent.values()), sent
    assert recorded == sent  # every stream, every sample from the first one


def test_a_stream_holds_until_it_has_a_consumer():
    """Without a consumer the held samples wait (bounded), then go out."""
    device = f"hold_{os.getpid()}"
    outlets = PhoneOutlets(device, ["gsr"], hello={}, sync={}, consumer_wait=30.0)
    inlet = None
    try:
        t = np.arange(5, dtype=float)
        outlets.push("gsr", t, t + 100.0, np.ones((5, 1)))
        assert outlets.counts["gsr"] == 5 and outlets._held_rows["gsr"] == 5
        infos = pylsl.resolve_byprop("source_id", f"lsl_session/{device}/gsr", 1, 5)
        inlet = pylsl.StreamInlet(infos[0])
        inlet.open_stream(timeout=5)
        assert wait_until(lambda: outlets.outlets["gsr"].have_consumers(), 5)
        outlets.flush_holds()  # what the relay's heartbeat does
        values, stamps = [], []
        wait_until(
            lambda: (
                bool(
                    (chunk := inlet.pull_chunk(timeout=0.1))[1]
                    and (values.extend(chunk[0]), stamps.extend(chunk[1]))
                )
                or len(stamps) >= 5
            ),
            timeout=5,
        )
        assert stamps == [100.0, 101.0, 102.0, 103.0, 104.0]
        assert "gsr" not in outlets._held  # released: later pushes go straight out
    finally:
        if inlet is not None:  # before the outlet: no reconnect attempts left behind
            inlet.close_stream()
            del inlet
        outlets.close()
