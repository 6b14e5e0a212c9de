"""Separate processes join one session: ``new``, a relay with ``--session``, a phone,
and ``record --session`` twice (SPEC §12; the relay follows the recorder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyxdf

CLI = [sys.executable, "-m", "lsl_session"]


def _events(folder: Path) -> list[dict]:
    return json.loads((folder / f"{folder.name}_log.json").read_text())


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stderr.readline()
        if text in line:
            return line
    raise AssertionError(f"no {text!r} from {proc.args}: {line}")


def _record(folder: Path, device: str, seconds: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*CLI, "record", "--session", str(folder), "--duration", str(seconds),
         "--stream", f"starts-with(source_id, 'lsl_session/{device}/')",
         "--no-process"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(proc.stdout.strip().splitlines()[-1]) == folder
    return proc


def test_relay_with_session_follows_a_recorder_in_another_process(tmp_path):
    new = subprocess.run(
        [*CLI, "new", "--root", str(tmp_path), "--name", "joined"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    folder = Path(new.stdout.strip().splitlines()[-1]).resolve()
    device = f"joiner_{os.getpid()}"
    relay = subprocess.Popen(
        [*CLI, "outlet", "phone-relay", "--host", "127.0.0.1", "--port", "0",
         "--session", str(folder)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    phone = None
    try:
        port = _wait_for(relay, "listening:").rsplit(":", 1)[1].split()[0]
        phone = subprocess.Popen(
            [*CLI, "outlet", "phone-sim", "--relay", f"127.0.0.1:{port}",
             "--device-id", device, "--jitter-ms", "5"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for(phone, "connected:")
        time.sleep(1.5)  # clock fit ready, streams up
        _record(folder, device, 3)  # first recording: <id>.xdf
        time.sleep(2.0)  # uploads of the first stop
        _record(folder, device, 2)  # second: <id>_part002.xdf
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            received = [e for e in _events(folder) if e["event"] == "file_received"]
            if len(received) >= 4:
                break
            time.sleep(0.2)
    finally:
        for proc in (phone, relay):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    events = _events(folder)
    starts = [e["lsl_time"] for e in events if e["event"] == "start_record"]
    stops = [e["lsl_time"] for e in events if e["event"] == "stop_record"]

    def acks(command: str) -> list[dict]:
        return [
            e
            for e in events
            if e["event"] == "device_ack" and e.get("command") == command
        ]

    assert len(starts) == len(stops) == 2
    for command, times in (("start_record", starts), ("stop_record", stops)):
        got = acks(command)
        assert [a["status"] for a in got] == ["ok", "ok"], got
        assert all(a["device_id"] == device for a in got)
        lags = [a["lsl_time"] - t for a, t in zip(got, times, strict=True)]
        print(f"\n{command} acked {[round(x, 3) for x in lags]} s after the recorder")  # noqa: T201
        assert all(0 < lag < 1.0 for lag in lags), (command, lags)
    received = [e for e in events if e["event"] == "file_received"]
    assert sorted(e["file_type"] for e in received) == [
        "rgb",
        "rgb",
        "thermal",
        "thermal",
    ]
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert all(len(f["sha256"]) == 64 for f in meta["files"][device])
    assert meta["recording"]["xdf_files"] == [
        f"{folder.name}.xdf",
        f"{folder.name}_part002.xdf",
    ]
    for name in meta["recording"]["xdf_files"]:
        streams, _ = pyxdf.load_xdf(str(folder / name))
        names = {s["info"]["name"][0] for s in streams}
        assert f"{device}_motion" in names and f"{device}_gsr" in names
    assert any(e["event"] == "session_resume" for e in events)
