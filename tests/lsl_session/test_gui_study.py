"""The control room in a real Chromium, for a whole study (issue #26 item 7).

`lsl-session gui` runs as a subprocess, the outlets in another process; the page
picks two streams, names the runs, records three runs (one with a Split), adds a
note and a marker, opens a report and exports BIDS; a LabRecorder RCS client
drives the same server at the same time.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pyxdf
from browser import browser_page, require_chromium
from lsl_helpers import wait_until


def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait for ``predicate`` (polled every 0.1 s); fail naming ``what``."""
    assert wait_until(predicate, timeout=timeout, step=0.1), f"timed out: {what}"


HERE = Path(__file__).parent


class GuiProcess:
    """``lsl-session gui`` as a lab runs it; its URL and RCS port read from stderr."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lsl_session", "gui", "--root", str(root),
             "--port", "0", "--rcs-port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        until(lambda: self.url and self.rcs, timeout=30, what="gui URL")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            m = re.search(pattern, line)
            if m:
                return m
        return None

    @property
    def url(self) -> str | None:
        m = self._find(r"control room: (\S+)")
        return m.group(1) if m else None

    @property
    def rcs(self) -> int | None:
        m = self._find(r"remote control \(RCS\) on \S+:(\d+)")
        return int(m.group(1)) if m else None

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=120)
        return out


def rcs(port: int, line: str) -> bytes:
    """Send one RCS line and read the reply (as labrecorder-controller does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(line.encode() + b"\n")
        return s.recv(1 << 20)


@pytest.fixture
def outlets(uid):
    proc = subprocess.Popen([sys.executable, str(HERE / "_gui_outlets_child.py"), uid])
    yield uid
    proc.kill()
    proc.wait()


def _row(page, name_part: str):
    return page.locator("#streams tbody tr", has_text=name_part)


def _wait_text(page, selector: str, pattern: str, timeout: float = 30) -> None:
    until(
        lambda: re.search(pattern, page.inner_text(selector)) is not None,
        timeout=timeout,
        what=f"{selector} ~ {pattern}",
    )


def _recording(page, yes: bool) -> None:
    _wait_text(page, "#state", "^recording$" if yes else "^(?!recording)", 30)


def test_a_whole_study_in_the_browser(tmp_path, outlets):
    require_chromium()
    uid = outlets
    study = tmp_path / "study"
    gui = GuiProcess(study)
    dialogs: list[str] = []
    try:
        with browser_page() as (page, errors):
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.set_viewport_size({"width": 1300, "height": 1000})
            page.goto(gui.url)
            # 1. stream list: both streams, picked by their checkboxes
            until(lambda: _row(page, f"EEG_{uid}").count() == 1, timeout=30)
            until(lambda: _row(page, f"Mk_{uid}").count() == 1, timeout=30)
            for name in (f"EEG_{uid}", f"Mk_{uid}"):
                _row(page, name).locator("input.pick").check()
                until(
                    lambda n=name: _row(page, n).locator("input.pick").is_checked(),
                    timeout=10,
                )
                time.sleep(0.5)
            # 2. naming
            page.fill("#fields input[name=participant]", "P07")
            page.fill("#fields input[name=session]", "S02")
            page.fill("#fields input[name=task]", "oddball")
            page.click("#save-fields")
            _wait_text(
                page,
                "#preview",
                r"^sub-P07/ses-S02/sub-P07_ses-S02_task-oddball_run-001_eeg_",
            )
            # 3. run 1 with a note and a marker
            page.click("#start")
            _recording(page, True)
            until(
                lambda: page.locator("#live tbody tr", has_text=f"EEG_{uid}").count(),
                timeout=20,
            )
            page.fill("#note", "note <b>one</b>")
            page.click("#note-form button")
            _wait_text(page, "#message", "note added")
            page.click("#markers button >> text=block_start")
            _wait_text(page, "#message", "marker block_start sent")
            # the channel viewer: labels and units, markup shown as text
            page.click(f"#live a >> text=EEG_{uid}")
            until(lambda: page.is_visible("#trace"), timeout=10)
            time.sleep(1.0)
            page.click("#stop")
            _recording(page, False)
            _wait_text(page, "#preview", "run-002")  # the run moved on
            # run 2 with a Split
            page.click("#start")
            _recording(page, True)
            time.sleep(1.5)
            page.click("#split")
            _wait_text(page, "#message", "now writing")
            time.sleep(1.5)
            page.click("#stop")
            _recording(page, False)
            _wait_text(page, "#preview", "run-003")
            # run 3: an RCS script and the page share one state
            assert rcs(gui.rcs, "filename {task:memory}") == b"OK"
            until(
                lambda: page.input_value("#fields input[name=task]") == "memory",
                timeout=10,
                what="page shows the RCS task",
            )
            assert rcs(gui.rcs, "start") == b"OK"
            _recording(page, True)
            time.sleep(1.5)
            # closing the page never stops a recording; a second browser sees it
            browser = page.context.browser
            page.close()
            time.sleep(1.0)
            status = json.loads(rcs(gui.rcs, "status"))
            assert status["state"] == "recording"
            page = browser.new_page()  # a second browser: its own context
            page.goto(gui.url)
            _recording(page, True)
            page.click("#stop")
            _recording(page, False)
            assert page.input_value("#fields input[name=run]") == "4"
            # 5. sessions: three runs listed; open run 1's report; export BIDS
            sessions_dir = study / "sub-P07" / "ses-S02"
            until(lambda: len(list(sessions_dir.glob("*/processing/report.html"))) == 3,
                       timeout=180, what="three processed runs")  # fmt: skip
            run1 = next(sessions_dir.glob("sub-P07_ses-S02_task-oddball_run-001_eeg_*"))
            until(
                lambda: (
                    page.locator("#sessions tbody tr", has_text=run1.name)
                    .locator("a.report")
                    .is_visible()
                ),
                timeout=30,
            )
            with page.context.expect_page() as opened:  # the report tab
                page.locator("#sessions tbody tr", has_text=run1.name).locator(
                    "a.report"
                ).click()
            report = opened.value
            report.wait_for_load_state()
            assert run1.name in report.content()
            row = page.locator("#sessions tbody tr", has_text=run1.name)
            row.locator("button[data-kind=bids]").click()
            _wait_text(page, "#jobs", r"bids .*: done", timeout=240)
            # 6. nothing a stream sent was interpreted as markup
            assert dialogs == []
            assert page.evaluate("document.querySelectorAll('script').length") == 1
            injected = (
                "main img, #streams td b, #live td b, #sessions td b, #viewer b b"
            )
            assert page.evaluate(f"document.querySelectorAll('{injected}').length") == 0
            assert "<img src=x onerror=alert(1)>" in page.inner_text("#streams")
            # 7. a tablet at the participant's side
            page.set_viewport_size({"width": 412, "height": 900})
            time.sleep(0.5)
            assert page.evaluate("document.documentElement.scrollWidth") <= 412 + 1
            assert not [e for e in errors if "favicon" not in e]
    finally:
        gui.stop()
    # the folders, files and notes
    runs = sorted(p.name for p in (study / "sub-P07" / "ses-S02").iterdir())
    assert [re.sub(r"_\d{8}_\d{6}$", "", r) for r in runs] == [
        "sub-P07_ses-S02_task-memory_run-003_eeg",
        "sub-P07_ses-S02_task-oddball_run-001_eeg",
        "sub-P07_ses-S02_task-oddball_run-002_eeg",
    ]
    run1, run2 = sorted((study / "sub-P07" / "ses-S02").glob("*task-oddball*"))
    assert len(list(run2.glob("*.xdf"))) == 2  # the Split's two parts
    streams, _ = pyxdf.load_xdf(
        str(next(run1.glob("*.xdf"))), dejitter_timestamps=False
    )
    names = {s["info"]["name"][0]: s for s in streams}
    assert f"EEG_{uid}" in names and f"<img src=x onerror=alert(1)>Mk_{uid}" in names
    assert len(names[f"EEG_{uid}"]["time_stamps"]) > 250
    events = [s for n, s in names.items() if n.endswith("_events")]
    texts = [json.loads(x[0]).get("label") for s in events for x in s["time_series"]]
    assert "note <b>one</b>" in texts and "block_start" in texts
    # the two parts of run 2 meet without a gap and repeat nothing
    parts = sorted(run2.glob("*.xdf"))
    stamps = []
    for part in parts:
        ss, _ = pyxdf.load_xdf(str(part), dejitter_timestamps=False)
        eeg = next(s for s in ss if s["info"]["name"][0] == f"EEG_{uid}")
        stamps.append(eeg["time_stamps"])
    assert stamps[0][-1] < stamps[1][0]
    assert stamps[1][0] - stamps[0][-1] < 2.5 / 250
    bids = study / "bids"
    assert (bids / "dataset_description.json").is_file()
    assert list(bids.glob("sub-P07/ses-S02/eeg/*_eeg.*"))
