"""Refresh the control room screenshots in docs/img/ (README, docs/gui.md).

Starts an 8-channel EEG outlet and a marker outlet in this process, runs
``lsl-session gui`` as a process, picks both streams in a real headless Chromium,
records one run and photographs the page while it records (desktop and a 412 px
tablet), then the sessions list after the stop.

    python benchmarks/gui_screenshots.py [--out docs/img]

Needs Debian's chromium (``apt-get install -y chromium``) and Playwright (dev extra).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
from playwright.sync_api import sync_playwright

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--no-first-run"]  # fmt: skip
LABELS = ["Fp1", "Fp2", "C3", "C4", "P3", "P4", "O1", "O2"]


def outlets(tag: str, stop: threading.Event) -> None:
    info = pylsl.StreamInfo("EEG", "EEG", 8, 250, "float32", f"eeg-{tag}")
    chans = info.desc().append_child("channels")
    for label in LABELS:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
    eeg = pylsl.StreamOutlet(info)
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo("StimulusMarkers", "Markers", 1, 0, "string", f"mk-{tag}")
    )
    t0, sent, k = pylsl.local_clock(), 0, 0
    rng = np.random.default_rng(0)
    while not stop.is_set():
        now = pylsl.local_clock()
        n = int((now - t0) * 250) - sent
        if n > 0:
            t = (sent + np.arange(n)) / 250
            alpha = 20 * np.sin(2 * np.pi * 10 * t[:, None] + np.arange(8))
            data = alpha + 5 * rng.standard_normal((n, 8))
            eeg.push_chunk(data.astype(np.float32), t0 + t)
            sent += n
        if now - t0 >= k:
            markers.push_sample([f"trial {k}"])
            k += 1
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    threading.Thread(target=outlets, args=(uuid.uuid4().hex[:8], stop)).start()
    root = Path(tempfile.mkdtemp(prefix="lsl-session-gui-shots-"))
    gui = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "gui", "--root", str(root / "study"),
         "--port", "0", "--rcs-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = None
    while url is None:
        line = gui.stderr.readline()
        if not line:
            raise SystemExit("the gui ended before printing its URL")
        match = re.search(r"control room: (http://\S+)", line)
        url = match.group(1) if match else None
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            for name in ("EEG", "StimulusMarkers"):
                row = page.locator("#streams tbody tr", has_text=name).first
                row.wait_for()
                row.locator("input.pick").check()
                time.sleep(1.0)
            page.fill("#fields input[name=participant]", "P07")
            page.fill("#fields input[name=task]", "oddball")
            page.click("#save-fields")
            time.sleep(1.0)
            page.click("#start")
            time.sleep(3.0)
            page.fill("#note", "participant moved")
            page.click("#note-form button")
            page.click("#live a >> text=EEG")
            time.sleep(6.0)
            page.screenshot(path=str(args.out / "gui.png"), full_page=True)
            page.set_viewport_size({"width": 412, "height": 900})
            time.sleep(1.5)
            page.screenshot(path=str(args.out / "gui-tablet.png"), full_page=False)
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.click("#stop")
            time.sleep(20.0)  # processing writes the report and the verdict
            page.locator("#sessions").screenshot(
                path=str(args.out / "gui-sessions.png")
            )
            browser.close()
    finally:
        gui.terminate()
        gui.wait(60)
        stop.set()
    print(f"wrote {args.out}/gui.png, gui-tablet.png and gui-sessions.png")


if __name__ == "__main__":
    main()
