"""Every figure of the verdict line is made false on purpose and the line changes.

One real recording (pylsl outlets, the recorder, the processing pipeline, the
verdict written to ``processing/verdict.json``) holds a healthy GSR stream with
sync steps, the same stream delayed by 30 ms, a GSR stream with a 0.5 s gap and
a camera frame stream delivering 15 of its declared 30 fps. Each figure is then
traced to its fault: without the faulty stream the figure is back to healthy.
(A missing device: tests/lsl_session/test_lab_run.py.)
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
import pytest

from lsl_session.manager import SessionManager
from lsl_session.processing.session_data import load_session
from lsl_session.report.verdict import session_verdict, stream_loss

RATE = 128.0
SECONDS = 7.0
GAP = (3.0, 3.5)  # s after the start: 64 samples at 128 Hz


def _outlet(name: str, stype: str, rate: float, sid: str, fmt=pylsl.cf_float32):
    return pylsl.StreamOutlet(pylsl.StreamInfo(name, stype, 1, rate, fmt, sid))


@pytest.fixture(scope="module")
def faulty_session(tmp_path_factory):
    uid = f"{time.monotonic_ns():x}"
    names = {
        "ok": f"ok_{uid}_gsr",
        "late": f"late_{uid}_gsr",
        "gap": f"gap_{uid}_gsr",
        "cam": f"cam_{uid}_frames",
    }
    outlets = {
        "ok": _outlet(names["ok"], "GSR", RATE, f"ok{uid}"),
        "late": _outlet(names["late"], "GSR", RATE, f"late{uid}"),
        "gap": _outlet(names["gap"], "GSR", RATE, f"gap{uid}"),
        "cam": _outlet(names["cam"], "VideoFrames", 30.0, f"cam{uid}",
                       pylsl.cf_double64),
        "ref": _outlet("StimulusMarkers", "Markers", 0, f"ref{uid}", pylsl.cf_string),
    }  # fmt: skip
    mgr = SessionManager(tmp_path_factory.mktemp("recordings"))
    mgr.create_session("faults")
    mgr.start_recording([f"source_id='{k}{uid}'" for k in outlets])
    for outlet in outlets.values():
        outlet.wait_for_consumers(10)
    stop = threading.Event()
    t0 = pylsl.local_clock() + 0.2

    def push() -> None:
        sent = frames = pulses = 0
        while not stop.is_set():
            now = pylsl.local_clock()
            n = int((now - t0) * RATE) - sent
            if n > 0:
                t = (sent + np.arange(n)) / RATE
                high = (t % 2.0 >= 1.0) & (t % 2.0 < 1.25)  # steps at 1, 3, 5 s
                x = (2.0 + 5.0 * high).astype(np.float32)[:, None]
                outlets["ok"].push_chunk(x, t0 + t)
                outlets["late"].push_chunk(x, t0 + t + 0.030)  # stamped 30 ms late
                keep = (t < GAP[0]) | (t >= GAP[1])
                if keep.any():
                    outlets["gap"].push_chunk(
                        np.full((int(keep.sum()), 1), 2.0, np.float32), t0 + t[keep]
                    )
                sent += n
                while 2 * pulses + 1.0 <= t[-1]:
                    outlets["ref"].push_sample([f"sync_pulse {pulses + 1}"],
                                               t0 + 2 * pulses + 1.0)  # fmt: skip
                    pulses += 1
            while t0 + frames / 15.0 <= now:  # a camera that manages 15 of 30 fps
                outlets["cam"].push_sample([float(frames)], t0 + frames / 15.0)
                frames += 1
            time.sleep(0.02)

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    time.sleep(SECONDS)
    stop.set()
    thread.join()
    time.sleep(0.5)
    mgr.stop_recording()
    mgr.end_session()
    folder = mgr.session_dir
    mgr.close()
    return folder, names


def test_the_recorded_verdict_names_every_fault(faulty_session):
    folder, names = faulty_session
    saved = json.loads((folder / "processing" / "verdict.json").read_text())
    line, notes = saved["verdict"], saved["notes"]
    assert line.startswith(
        "6 streams, 64 samples lost, 1 below nominal rate,"
        " 1/2 sync-checked streams aligned within one sample period"
    ), line
    assert f"{names['gap']}: 64 samples missing in gaps of its recorded stamps" in notes
    assert any(
        n.startswith(f"{names['cam']}: rate 15.0 of 30 Hz nominal") for n in notes
    ), notes
    assert any(n.startswith(f"{names['late']}: NOT aligned") for n in notes), notes
    sync = json.loads((folder / "processing/sync_check/sync_check.json").read_text())
    rows = {r["stream"]: r for r in sync["streams"]}
    assert rows[names["ok"]]["aligned"] == "yes"
    assert rows[names["late"]]["aligned"] == "NO"
    assert rows[names["late"]]["offset_ms"] == pytest.approx(30, abs=4)
    # the report says the same, and the finished session is completed
    page = (folder / "processing" / "report.html").read_text()
    assert line in page
    assert "<td>completed</td>" in page


def _without(folder, drop: str):
    """The verdict recomputed without one stream (and its sync-check row)."""
    data = load_session(folder)
    sync = json.loads((folder / "processing/sync_check/sync_check.json").read_text())
    streams = [s for s in data.streams if s.name != drop]
    sync["streams"] = [r for r in sync["streams"] if r["stream"] != drop]
    return session_verdict(streams, sync), session_verdict(
        data.streams,
        json.loads((folder / "processing/sync_check/sync_check.json").read_text()),
    )


def test_the_gap_is_the_loss(faulty_session):
    folder, names = faulty_session
    without, full = _without(folder, names["gap"])
    assert full.samples_lost == 64 and without.samples_lost == 0
    assert "0 samples lost" in without.line and "64 samples lost" in full.line


def test_the_slow_camera_is_a_rate_not_a_loss(faulty_session):
    folder, names = faulty_session
    cam = next(s for s in load_session(folder).streams if s.name == names["cam"])
    loss = stream_loss(cam)
    assert loss.by == "counter" and loss.lost == 0
    assert loss.rate == pytest.approx(15.0, rel=0.01)
    without, full = _without(folder, names["cam"])
    assert full.n_slow == 1 and without.n_slow == 0
    assert "below nominal rate" in full.line and "below nominal" not in without.line


def test_the_delayed_stream_is_the_one_not_aligned(faulty_session):
    folder, names = faulty_session
    without, full = _without(folder, names["late"])
    assert (full.n_aligned, full.n_checked) == (1, 2)
    assert (without.n_aligned, without.n_checked) == (1, 1)
    assert "1/1 sync-checked streams aligned" in without.line
