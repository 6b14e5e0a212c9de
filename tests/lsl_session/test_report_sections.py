"""The report a scientist reads: channels with names, units and scale (a selector
where there are many), marker labels, gaps as gaps, internal streams apart, rates
within 0.1 % as ok, flat and clipped channels flagged; checked in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from browser import browser_page
from test_processing_support import T0, Clock, stream_xml, write_xdf

from lsl_session.channel_checks import channel_flags
from lsl_session.processing import load_session
from lsl_session.report import channel_figures
from lsl_session.session import create_session_folder

DURATION = 12.0
LABELS = [f"C{k}" for k in range(1, 11)]


def _specs(session_id: str):
    rng = np.random.default_rng(3)
    off = Clock(0.0, 0.0)
    # a 3.5 s dropout at 250 Hz: past pyxdf's dejitter break (> 500 samples), so
    # the loaded stamps keep it (a shorter one is spread over, as pyxdf does)
    te = T0 + 0.1 + np.arange(int(DURATION * 250)) / 250
    te = te[(te < T0 + 4.0) | (te >= T0 + 7.5)]
    ve = rng.normal(0, 10, (len(te), 10)).astype(np.float32)
    ve[:, 2] = 0.0  # C3: flat
    ve[:, 4] = np.clip(ve[:, 4] * 3, -15, 15)  # C5: clipped at ±15
    tc = T0 + 0.2 + np.arange(int(DURATION * 15)) / 15  # a camera at 15 of 30 fps
    tm = T0 + np.array([1.0, 2.0, 9.0, 10.0])
    tk = T0 + 0.3 + np.arange(12) * 1.0
    ev = json.dumps({"event": "start_record"})
    return [
        (1, stream_xml("amp", "EEG", "float32",
                       [(c, "microvolts", "EEG") for c in LABELS], 250), "float32",
         te, ve, off, te),
        (2, stream_xml("cam_frames", "VideoFrames", "float32",
                       [("frame_index", "index", "FrameIndex")], 30), "float32",
         tc, np.arange(len(tc), dtype=np.float32)[:, None], off, tc),
        (3, stream_xml("stim", "Markers", "string", [("m", "", "Markers")], 0),
         "string", tm, [["go"], ["stop"], ["go"], ["stop"]], off, tm),
        (4, stream_xml("p1_clock", "ClockMapping", "float32",
                       [("phone_time", "s", ""), ("offset_s", "s", "")], 0), "float32",
         tk, np.zeros((len(tk), 2), np.float32), off, tk),
        (5, stream_xml(f"{session_id}_events", "Markers", "string",
                       [("event", "json", "Markers")], 0,
                       source_id=f"lsl_session/{session_id}/events"), "string",
         np.array([T0 + 0.05]), [[ev]], off, np.array([T0 + 0.05])),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = create_session_folder(tmp_path_factory.mktemp("rep") / "rec", "sci")
    write_xdf(folder / f"{folder.name}.xdf", _specs(folder.name), duration=DURATION)
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"].update(xdf_files=[f"{folder.name}.xdf"], start_lsl_time=T0)
    meta_path.write_text(json.dumps(meta))
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "report", str(folder)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page = (folder / "processing" / "report.html").read_text()
    return folder, page


def _section(page: str, name: str) -> str:
    start = page.index(f"<h3 id='stream-{name}'>")
    end = page.find("</section>", start)
    return page[start:end]


def test_every_channel_with_name_unit_and_a_paged_selector(report):
    _, page = report
    assert "<script" not in page.lower()  # static: the selector is <details>
    amp = _section(page, "amp")
    for label in LABELS:
        assert f"<td>{label}</td>" in amp
    assert amp.count("<td>microvolts</td>") == 10
    pages = re.findall(r"<summary>(channels [^<]*)</summary>", amp)
    assert pages == ["channels 1–8 of 10 (C1 … C8)", "channels 9–10 of 10 (C9 … C10)"]
    assert amp.count("<details open>") == 1


def test_flat_and_clipped_channels_are_flagged(report):
    _, page = report
    assert "amp C3: flat at 0 microvolts" in page
    assert "amp C5: clipped at 15 microvolts" in page
    assert "amp C1:" not in page and "cam_frames frame_index:" not in page


def test_internal_streams_have_their_own_section_and_no_figure(report):
    folder, page = report
    internal = page[page.index("<h2>Internal streams</h2>") : page.index("<h2>Rates")]
    assert "p1_clock" in internal and f"{folder.name}_events" in internal
    assert "id='stream-p1_clock'" not in page
    assert f"id='stream-{folder.name}_events'" not in page


def test_rates_within_a_tenth_of_a_percent_read_ok(report):
    _, page = report
    rates = page[page.index("<h2>Rates and gaps</h2>") : page.index("<h2>Clock")]
    # the dropout is loss (counted apart), not a rate shortfall
    assert re.search(r"<td>amp</td><td>250</td><td>2[0-9.]+</td><td>[0-9.]+</td>"
                     r"<td>ok</td>", rates)  # fmt: skip
    assert "15 of 30 Hz (-50.00 %)" in rates  # a steady shortfall is named


def test_marker_labels_and_the_gap_drawn_as_a_break(report):
    folder, page = report
    stim = _section(page, "stim")
    assert stim.count("<td>go</td>") == 2 and stim.count("<td>stop</td>") == 2
    amp = load_session(folder).stream("amp")
    t = np.asarray(amp.time_stamps)
    v = np.asarray(amp.time_series)
    bt, bv = channel_figures.with_breaks(t, v, 1 / 250)
    (nan_at,) = np.flatnonzero(np.isnan(bt))
    assert bt[nan_at - 1] < T0 + 4.0 <= T0 + 7.5 <= bt[nan_at + 1]
    assert np.isnan(bv[nan_at]).all()
    assert len(bt) == len(t) + 1  # one break, no other


def test_event_timeline_rows_are_streams_not_none(report):
    folder, _ = report
    data = load_session(folder)
    rows = channel_figures.timeline_rows(data.events.to_dict("records"))
    assert rows == [f"{folder.name}_events", "stim"]


def test_channel_checks_false_alarms():
    rng = np.random.default_rng(1)
    quantised = np.round(rng.normal(9.81, 0.02, (5000, 1)) * 100) / 100
    step = np.where(np.arange(5000) % 500 < 50, 7.0, 2.0)[:, None]
    assert channel_flags(quantised) == []  # noise on a few levels is not clipping
    assert channel_flags(step) == []  # a two-level sync step is not clipping
    assert channel_flags(np.full((9, 1), 3.0)) == []  # too few samples to tell


def test_report_in_chromium_selector_opens_the_next_page(report):
    folder, _ = report
    with browser_page() as (page, errors):
        page.goto((folder / "processing" / "report.html").as_uri())
        sizes = page.evaluate(
            "() => [...document.images].map(i => [i.complete, i.naturalWidth])"
        )
        assert sizes and all(done and width > 100 for done, width in sizes)
        second = page.locator("summary", has_text="channels 9–10 of 10")
        image = second.locator("xpath=..").locator("img")
        assert not image.is_visible()
        second.click()
        assert image.is_visible()
        assert errors == []
