"""The live dashboard tells the truth about devices: a real lab run, a real Chromium.

A required phone that never connects reads ``missing (never connected)`` in the
device list, and the required-device failure is a sentence among the warnings and
the events, not raw JSON.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

from browser import browser_page

CLI = [sys.executable, "-m", "lsl_session"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dashboard_url(proc: subprocess.Popen, lines: list[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"dashboard: (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("no dashboard URL:\n" + "".join(lines))


def test_missing_required_device_on_the_dashboard(tmp_path, uid):
    device = f"absent_{uid}"
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nroot = "rec"\n[record]\nwait_s = 1\nprocess = false\n'
        f'[relay]\nhost = "127.0.0.1"\nport = {_free_port()}\n'
        f'[markers]\nname = "M_{uid}"\nsync_every_s = 1\n'
        f'[[devices]]\nid = "{device}"\ntype = "android_phone"\ntoken = "t"\n'
        "required = true\n"
    )
    record = subprocess.Popen(
        [*CLI, "record", "--config", str(config), "--dashboard", "--dashboard-port",
         "0", "--allow-missing", "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    lines: list[str] = []
    try:
        url = _dashboard_url(record, lines)
        with browser_page() as (page, errors):
            page.goto(url)
            page.wait_for_function(
                "() => document.querySelector('#devices').innerText"
                ".includes('missing (never connected)')",
                timeout=30_000,
            )
            devices = page.inner_text("#devices")
            assert f"{device} (android_phone): missing (never connected)" in devices
            sentence = f"required device(s) not streaming after 1 s: {device}"
            page.wait_for_function(
                f"() => document.querySelector('#warnings').innerText"
                f".includes({sentence!r})",
                timeout=30_000,
            )
            events = page.inner_text("#events")
            assert f"error: {sentence}" in events
            assert '{"category"' not in events  # a sentence, not raw JSON
            assert errors == []
    finally:
        record.send_signal(signal.SIGINT)
        _out, err = record.communicate(timeout=120)
    assert record.returncode == 0, "".join(lines) + err
