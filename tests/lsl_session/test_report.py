"""The session report (processing/report.html) and the verdict line."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pylsl
import pytest
from browser import browser_page

from lsl_session.manager import SessionManager
from lsl_session.report.verdict import missing_samples, session_verdict

SRATE = 128.0


def test_missing_samples_counts_gaps_not_drift():
    stamps = np.arange(1000) / SRATE
    assert missing_samples(stamps, SRATE) == 0
    # 100 ppm of drift is not loss
    assert missing_samples(stamps * 1.0001, SRATE) == 0
    gapped = np.delete(stamps, np.r_[100:110, 500:501])
    assert missing_samples(gapped, SRATE) == 11
    assert missing_samples(stamps, 0.0) == 0


class _Stream:
    def __init__(self, name, stamps, srate):
        self.name, self.time_stamps, self.nominal_srate = name, stamps, srate


def test_verdict_line_and_explained_partial_counts():
    streams = [_Stream("a_gsr", np.arange(100) / SRATE, SRATE)]
    sync = {
        "streams": [
            {"stream": "a_gsr", "n_reference": 6, "n_matched": 5,
             "n_reference_outside": 1, "within_one_sample": True, "note": ""},
            {"stream": "b_frames", "n_reference": 6, "n_matched": 4, "n_detected": 4,
             "n_reference_outside": 0, "within_one_sample": False, "note": ""},
            {"stream": "c_frames", "n_reference": 6, "n_matched": 0, "n_detected": 0,
             "n_reference_outside": 0, "within_one_sample": False,
             "note": "video not found"},
        ]
    }  # fmt: skip
    verdict = session_verdict(streams, sync, report="r.html")
    assert verdict.line == (
        "1 streams, 0 samples lost, 1/3 sync-checked streams aligned within one"
        " sample period, report: r.html"
    )
    assert any("a_gsr: 5/6 pulses: 1 fell outside" in n for n in verdict.notes)
    assert any("b_frames: 4/6 pulses matched" in n for n in verdict.notes)
    assert "c_frames: no pulses detected: video not found" in verdict.notes


def _pulse_session(root, uid):
    """Record a GSR-like square wave and sync markers at its rising edges."""
    gsr = pylsl.StreamOutlet(
        pylsl.StreamInfo(f"rep_{uid}_gsr", "GSR", 1, SRATE, pylsl.cf_float32, f"g{uid}")
    )
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo("StimulusMarkers", "Markers", 1, 0, pylsl.cf_string, f"m{uid}")
    )
    stop = threading.Event()
    t0 = pylsl.local_clock() + 0.5

    def push() -> None:
        sent, pulses = 0, 0
        while not stop.is_set():
            n = int((pylsl.local_clock() - t0) * SRATE) - sent
            if n > 0:
                t = (sent + np.arange(n)) / SRATE
                value = np.where(np.abs(t % 1.0 - 0.6) < 0.1, 5.0, 1.0).astype(
                    np.float32
                )
                gsr.push_chunk(value[:, None], t0 + t)
                sent += n
                while pulses + 0.5 <= t[-1]:
                    markers.push_sample(["sync_pulse"], t0 + pulses + 0.5)
                    pulses += 1
            time.sleep(0.02)

    mgr = SessionManager(root)
    mgr.create_session("report")
    mgr.start_recording([f"source_id='g{uid}'", f"source_id='m{uid}'"])
    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    time.sleep(4.5)
    mgr.stop_recording()
    stop.set()
    thread.join()
    mgr.end_session()
    folder = mgr.session_dir
    mgr.close()
    return folder


@pytest.fixture(scope="module")
def pulse_uid():
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def pulse_session(tmp_path_factory, pulse_uid):
    return _pulse_session(tmp_path_factory.mktemp("recordings"), pulse_uid)


def test_process_writes_report_with_every_figure(pulse_session, pulse_uid):
    report = pulse_session / "processing" / "report.html"
    page = report.read_text()
    assert (
        page.count('<img class="figure"') == 5
    )  # the GSR channels, the markers, offsets, sync, events (rates: a table)
    assert f"rep_{pulse_uid}_gsr" in page
    verdict = json.loads((pulse_session / "processing" / "verdict.json").read_text())
    assert verdict["verdict"].startswith("3 streams, 0 samples lost, 1/1 sync-checked")
    # nothing is fetched: every figure is inline
    assert "http://" not in page and "https://" not in page


def test_report_renders_in_browser(pulse_session):
    report = pulse_session / "processing" / "report.html"
    with browser_page() as (page, errors):
        page.goto(report.as_uri())
        sizes = page.evaluate(
            "() => [...document.images].map(i => [i.complete, i.naturalWidth])"
        )
        assert len(sizes) == 5
        assert all(done and width > 100 for done, width in sizes)
        assert "samples lost" in page.inner_text("#verdict")
        assert errors == []


def test_report_command_regenerates(pulse_session):
    report = pulse_session / "processing" / "report.html"
    report.unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "report", str(pulse_session)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(report)
    assert report.is_file()
    assert "samples lost" in proc.stderr


def test_report_command_on_missing_folder_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "report", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
