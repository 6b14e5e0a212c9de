"""Peer-supplied text in the session report (#31): shown as typed, never parsed.

Any peer can name a stream ``x_$\\foo{x}$``: matplotlib's mathtext used to fail on
it (no report.html, a traceback from ``lsl-session report``). Real LSL outlets with
mathtext and HTML in their names, types, channel labels and marker text are recorded,
processed and reported by the CLI (subprocesses); the page is checked in Chromium.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
from browser import browser_page

from lsl_session.manager import SessionManager

MATH_NAME = "x_$\\foo{x}$"
HTML_NAME = "<b id='inj'>bold</b>$\\frac{1}{0}$"
MARKER = "$^^$ <script>window.injected = 1</script>"
DEVICE = "<b id='dev'>d</b>$\\foo{x}$"


def _record(root, uid):
    info = pylsl.StreamInfo(
        f"{MATH_NAME}_{uid}", "$\\sqrt{$", 2, 100.0, pylsl.cf_float32, f"m{uid}"
    )
    chans = info.desc().append_child("channels")
    for label in ("$\\alpha", "<i>c2</i>$_$"):
        chans.append_child("channel").append_child_value("label", label)
    eeg = pylsl.StreamOutlet(info)
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo(
            f"{HTML_NAME}_{uid}", "Markers$", 1, 0, pylsl.cf_string, f"h{uid}"
        )
    )
    stop = threading.Event()
    rng = np.random.default_rng(0)

    def push() -> None:
        while not stop.is_set():
            eeg.push_chunk(rng.random((5, 2)).astype(np.float32).tolist())
            markers.push_sample([MARKER])
            time.sleep(0.05)

    mgr = SessionManager(root)
    mgr.create_session("mathtext")
    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    mgr.start_recording([f"source_id='m{uid}'", f"source_id='h{uid}'"])
    time.sleep(2.5)
    mgr.stop_recording()
    stop.set()
    thread.join()
    mgr.end_session(process=False)
    folder = mgr.session_dir
    mgr.close()
    return folder


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_mathtext_and_markup_in_peer_text_are_shown_as_text(tmp_path, uid):
    folder = _record(tmp_path, uid)
    log = folder / f"{folder.name}_log.json"
    events = json.loads(log.read_text())
    events.append({**events[-1], "event": "$\\foo{x}$<b>ev</b>"})  # a tampered log
    log.write_text("[\n" + ",\n".join(json.dumps(e) for e in events) + "\n]\n")
    meta_path = folder / "session_metadata.json"  # a tampered device id
    meta = json.loads(meta_path.read_text())
    meta.setdefault("devices", {})[DEVICE] = {
        "device_type": "<i>phone</i>$x$",
        "capabilities": ["$\\foo$"],
        "status": "<b>",
    }
    meta_path.write_text(json.dumps(meta))
    proc = _cli("process", str(folder))
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = folder / "processing" / "report.html"
    assert report.is_file(), proc.stderr[-3000:]
    report.unlink()
    proc = _cli("report", str(folder))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    page_html = report.read_text()
    assert page_html.count('<img class="figure"') >= 3
    assert "<b id='inj'>" not in page_html and "<script>window" not in page_html
    with browser_page() as (page, errors):
        page.goto(report.as_uri())
        assert page.evaluate("() => document.querySelectorAll('#inj').length") == 0
        assert page.evaluate("() => document.querySelectorAll('#dev').length") == 0
        assert page.evaluate("() => window.injected === undefined")
        text = page.inner_text("body")
        assert f"{MATH_NAME}_{uid}" in text  # the name as typed, as text
        assert f"{HTML_NAME}_{uid}" in text
        assert DEVICE in text
        sizes = page.evaluate(
            "() => [...document.images].map(i => [i.complete, i.naturalWidth])"
        )
        assert sizes and all(done and width > 100 for done, width in sizes)
        assert errors == []


def test_verdict_names_the_failed_report_step(tmp_path, uid):
    """Only the report step fails (its target is a folder): the verdict line of
    ``record`` says so instead of "not processed"."""
    from lsl_helpers import RegularSource

    new = _cli("new", "--root", str(tmp_path), "--name", "verdict")
    assert new.returncode == 0, new.stderr
    folder = tmp_path / new.stdout.strip().splitlines()[-1]
    (folder / "processing" / "report.html").mkdir(parents=True)
    src = RegularSource(f"v_{uid}", f"v_{uid}", channels=1, srate=100).start()
    try:
        proc = _cli(
            "record", "--session", str(folder), "--stream", f"source_id='v_{uid}'",
            "--duration", "2",
        )  # fmt: skip
    finally:
        src.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    verdict = [line for line in proc.stderr.splitlines() if " samples, " in line]
    assert len(verdict) == 1, proc.stderr[-3000:]
    assert "not processed" not in verdict[0]
    assert "processing partial: report failed: IsADirectoryError" in verdict[0]
    assert "Traceback" not in proc.stderr
