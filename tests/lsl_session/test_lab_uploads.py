"""Announced uploads at stop: awaited with progress; a missing one is an error event."""

from __future__ import annotations

import json
import os
import socket
import threading

from lsl_helpers import wait_until

from lsl_session.config import load_config
from lsl_session.lab import LabOptions, LabRun
from lsl_session.lab.uploads import UploadTracker
from lsl_session.signals import StopRequest
from outlets.phone import PhoneSimulator


def test_tracker_matches_announced_files_by_type():
    tracker = UploadTracker()
    tracker.announce(
        {
            "p1": {
                "status": "ok",
                "uploads": [{"file_type": "rgb"}, {"file_type": "thermal"}],
            },
            "p2": {"status": "ok"},  # announces nothing: nothing awaited
            "p3": {"status": "ok", "uploads": "garbage"},
        }
    )
    assert tracker.expected_count() == 2
    tracker.on_relay_event(
        {"event": "file_received", "device_id": "p1", "file_type": "rgb"}
    )
    tracker.on_relay_event(
        {"event": "file_received", "device_id": "p2", "file_type": "rgb"}
    )
    assert tracker.missing() == {"p1": ["thermal"]}
    seen = []
    assert tracker.wait(0.2, progress=lambda d, n: seen.append((d, n))) == {
        "p1": ["thermal"]
    }
    assert seen == [(1, 2)]
    tracker.on_relay_event(
        {"event": "file_received", "device_id": "p1", "file_type": "thermal"}
    )
    assert tracker.wait(0.2) == {}


def test_tracker_bounds_what_a_phone_announces():
    tracker = UploadTracker()
    tracker.announce({"p": {"uploads": [{"file_type": "x" * 1000}] * 10_000}})
    assert tracker.expected_count() == 64
    assert len(tracker.missing()["p"][0]) == 32


class SilentPhone(PhoneSimulator):
    """A phone app that announces its videos at stop and never uploads them."""

    def _upload_all(self) -> None:
        self._uploads_pending.clear()


def test_missing_upload_is_an_error_event_never_silent(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    device = f"silent_{os.getpid()}"
    path = tmp_path / "lab.toml"
    path.write_text(
        '[session]\nroot = "rec"\n[record]\nupload_timeout_s = 1\nprocess = false\n'
        f'[relay]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[[devices]]\nid = "{device}"\ntype = "android_phone"\ntoken = "t"\n'
    )
    lines: list[str] = []
    lab = LabRun(load_config(path), LabOptions(duration=3.0), say=lines.append)
    stopper = StopRequest()
    result = {}
    runner = threading.Thread(target=lambda: result.update(r=lab.run(stopper)))
    runner.start()
    assert wait_until(lambda: any("listening" in ln for ln in lines), 20)
    phone = SilentPhone("127.0.0.1", port, device, "t", jitter_ms=(1, 5)).start()
    try:
        runner.join(60)
    finally:
        phone.stop()
    outcome = result["r"]
    assert outcome.missing_uploads == {device: ["rgb", "thermal"]}
    assert any("uploads 0/2" in ln for ln in lines)
    folder = outcome.folder
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    errors = [e for e in events if e["event"] == "error"]
    assert [e["device_id"] for e in errors] == [device]
    assert "rgb, thermal" in errors[0]["message"]
