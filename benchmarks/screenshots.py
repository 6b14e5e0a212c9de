"""Refresh the dashboard and report screenshots in docs/img/ (README, docs/dashboard.md).

Runs simulated devices (``lsl-session outlet simulate``) and ``lsl-session record
--dashboard`` as processes, as a lab would, photographs the live page with a real
headless Chromium, then the report that processing wrote.

    python benchmarks/screenshots.py [--out docs/img] [--duration 15]

Needs Debian's chromium (``apt-get install -y chromium``) and Playwright (dev extra).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--no-first-run"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="lsl-session-shots-"))
    lsl = [sys.executable, "-m", "lsl_session"]
    devices = subprocess.Popen(
        [*lsl, "outlet", "simulate", "--phones", "1",
         "--duration", str(args.duration + 20)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
    )  # fmt: skip
    try:
        time.sleep(4)  # the devices' outlets and the phone's clock fit
        record = subprocess.Popen(
            [*lsl, "record", "--root", str(root), "--name", "screenshots",
             "--duration", str(args.duration), "--dashboard", "--dashboard-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        url = None
        while url is None:
            line = record.stderr.readline()
            if not line:
                raise SystemExit("record ended before printing the dashboard URL")
            match = re.search(r"dashboard: (http://\S+)", line)
            url = match.group(1) if match else None
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            time.sleep(args.duration * 0.6)
            page.screenshot(path=str(args.out / "dashboard.png"), full_page=True)
            out, _ = record.communicate(timeout=600)
            folder = Path(out.strip().splitlines()[-1])
            page.goto((folder / "processing" / "report.html").as_uri())
            page.screenshot(path=str(args.out / "report.png"), full_page=False)
            browser.close()
    finally:
        devices.terminate()
        devices.wait(30)
    print(f"wrote {args.out / 'dashboard.png'} and {args.out / 'report.png'}")


if __name__ == "__main__":
    main()
