"""SessionManager lifecycle with the real recorder."""

from __future__ import annotations

import json
import time

import pytest
import pyxdf
from lsl_helpers import RegularSource

from lsl_session import layout
from lsl_session.errors import DeviceError, SessionStateError
from lsl_session.lifecycle import State
from lsl_session.manager import SessionManager


def _snapshot(manager):
    folder = manager.session_dir
    return (
        (folder / "session_metadata.json").read_bytes(),
        (folder / f"{folder.name}_log.json").read_bytes(),
    )


def test_full_lifecycle(session_root, uid):
    states = []
    mgr = SessionManager(session_root, lsl_events=True)
    mgr.on_state_change(lambda old, new: states.append(new))
    info = mgr.create_session("life")
    assert info["status"] == "active"
    mgr.add_device_to_session("phone_1", "android_phone", ["rgb_video", "gsr_data"])
    video = mgr.session.paths.device_folder("phone_1", "rgb") / "phone_1_rgb_x.mp4"
    video.write_bytes(b"\x00" * 1000)
    entry = mgr.add_file_to_session("phone_1", "rgb", video)
    assert entry["file_path"] == "devices/phone_1/rgb_videos/phone_1_rgb_x.mp4"
    assert entry["file_size"] == 1000 and len(entry["sha256"]) == 64
    src = RegularSource(f"mgr_{uid}", f"mgr_{uid}", channels=2, srate=100).start()
    mgr.start_recording([f"source_id='mgr_{uid}'"])
    assert mgr.current_session["status"] == "recording"
    mgr.logger.log_event("marker", {"label": "block_1"})
    time.sleep(1.5)
    summary = mgr.stop_recording()
    src.stop()
    meta = mgr.end_session(process=False)
    assert meta["status"] == "completed"
    assert meta["end_time"] and meta["duration_s"] > 0
    assert meta["recording"]["xdf_files"] == [f"{mgr.session_dir.name}.xdf"]
    names = {s["name"] for s in meta["recording"]["streams"]}
    assert names == {f"mgr_{uid}", f"{mgr.session_dir.name}_events"}
    assert states == [
        State.CREATING,
        State.ACTIVE,
        State.RECORDING,
        State.ACTIVE,
        State.PROCESSING,
        State.COMPLETED,
    ]
    events = json.loads(mgr.session.paths.log.read_text())
    assert [e["event"] for e in events] == [
        "session_start",
        "device_connected",
        "file_received",
        "start_record",
        "marker",
        "stop_record",
        "session_end",
    ]
    # the marker is inside the XDF, on the session's event stream
    streams, _ = pyxdf.load_xdf(
        str(mgr.session_dir / meta["recording"]["xdf_files"][0])
    )
    ev = {s["info"]["name"][0]: s for s in streams}[f"{mgr.session_dir.name}_events"]
    labels = [json.loads(v[0]).get("label") for v in ev["time_series"]]
    assert "block_1" in labels
    assert summary["streams"]
    mgr.close()


def test_invalid_transitions_change_nothing(session_root):
    mgr = SessionManager(session_root, lsl_events=False)
    with pytest.raises(SessionStateError, match="no session"):
        mgr.start_recording()
    with pytest.raises(SessionStateError):
        mgr.stop_recording()
    with pytest.raises(SessionStateError):
        mgr.end_session()
    with pytest.raises(SessionStateError, match="cannot reset"):
        mgr.reset()
    mgr.create_session("bad")
    before = _snapshot(mgr)
    with pytest.raises(SessionStateError, match="cannot stop recording"):
        mgr.stop_recording()
    with pytest.raises(SessionStateError, match="cannot create a session"):
        mgr.create_session("again")
    with pytest.raises(DeviceError, match="unknown device type"):
        mgr.add_device_to_session("x", "toaster", [])
    with pytest.raises(DeviceError, match="unknown capabilities"):
        mgr.add_device_to_session("x", "android_phone", ["teleport"])
    with pytest.raises(layout.InvalidNameError):
        mgr.add_device_to_session("../x", "android_phone", [])
    assert _snapshot(mgr) == before
    assert mgr.state is State.ACTIVE
    mgr.close()


def test_end_session_while_recording_is_refused(session_root, uid):
    mgr = SessionManager(session_root, lsl_events=False)
    mgr.create_session("rec")
    mgr.start_recording([f"source_id='none_{uid}'"])
    before = _snapshot(mgr)
    with pytest.raises(
        SessionStateError, match="cannot end the session: the session is recording"
    ):
        mgr.end_session()
    with pytest.raises(SessionStateError):
        mgr.start_recording()
    assert _snapshot(mgr) == before
    mgr.stop_recording()
    mgr.end_session(process=False)
    mgr.reset()
    assert mgr.state is State.IDLE
    mgr.create_session("next")  # a new session after reset
    mgr.close()


def test_unfinished_sessions_reported_at_start(session_root, caplog):
    mgr = SessionManager(session_root, lsl_events=False)
    mgr.create_session("crashy")
    folder = mgr.session_dir
    mgr.session.update(
        lambda m: m.update(
            status="recording", owner={"pid": 2**22 + 7, "host": m["owner"]["host"]}
        )
    )
    with caplog.at_level("WARNING"):
        other = SessionManager(session_root, lsl_events=False)
    assert other.unfinished_sessions == [folder]
    assert "unfinished" in caplog.text
    listed = {s["session_id"]: s["status"] for s in other.list_sessions()}
    assert listed[folder.name] == "interrupted"
