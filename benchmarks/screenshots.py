"""Refresh the dashboard and report screenshots in docs/img/ (README, docs/dashboard.md).

Runs ``lsl-session demo --dashboard`` as a process, photographs the live page with a
real headless Chromium, then the report that processing wrote.

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
    demo = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "demo", "--root", str(root),
         "--duration", str(args.duration), "--dashboard", "--dashboard-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
    )  # fmt: skip
    url = None
    while url is None:
        line = demo.stderr.readline()
        if not line:
            raise SystemExit("the demo ended before printing the dashboard URL")
        match = re.search(r"dashboard: (http://\S+)", line)
        url = match.group(1) if match else None
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        time.sleep(args.duration * 0.7)
        page.screenshot(path=str(args.out / "dashboard.png"), full_page=True)
        out, _ = demo.communicate(timeout=600)
        folder = Path(out.strip().splitlines()[-1])
        page.goto((folder / "processing" / "report.html").as_uri())
        page.screenshot(path=str(args.out / "report.png"), full_page=False)
        # a data stream's section: its channel table and the first page of channels
        motion = page.locator("section.stream", has_text="phone_1_motion")
        motion.screenshot(path=str(args.out / "report_stream.png"))
        browser.close()
    print(f"wrote {args.out}/dashboard.png, report.png and report_stream.png")


if __name__ == "__main__":
    main()
