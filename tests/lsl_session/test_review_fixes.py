"""Regression tests for durability and concurrency fixes found in review."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest
import pyxdf
from lsl_helpers import RegularSource

from lsl_session import events as events_module
from lsl_session.catalog import owner_alive, owner_record
from lsl_session.errors import LslSessionError
from lsl_session.manager import SessionManager
from lsl_session.recorder import Recorder
from lsl_session.recorder.output import OutputFailed, XdfOutput
from lsl_session.session import Session, create_session_folder


def test_concurrent_stops_return_the_same_summary(tmp_path, uid):
    src = RegularSource(f"cs_{uid}", f"cs_{uid}", channels=2, srate=200).start()
    rec = Recorder(tmp_path / "c.xdf", streams=[f"source_id='cs_{uid}'"])
    rec.start()
    time.sleep(1.0)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(rec.stop())) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    src.stop()
    assert len(results) == 3
    assert all(r == results[0] for r in results)
    assert results[0]["streams"][0]["sample_count"] > 0


def test_second_recording_continues_in_next_part(session_root, uid):
    src = RegularSource(f"two_{uid}", f"two_{uid}", channels=1, srate=100).start()
    mgr = SessionManager(session_root, lsl_events=False)
    mgr.create_session("two")
    for _ in range(2):
        mgr.start_recording([f"source_id='two_{uid}'"])
        time.sleep(0.8)
        mgr.stop_recording()
    src.stop()
    sid = mgr.session_dir.name
    meta = mgr.current_session
    assert meta["recording"]["xdf_files"] == [f"{sid}.xdf", f"{sid}_part002.xdf"]
    assert len(meta["recording"]["runs"]) == 2
    (total,) = [r for r in meta["recording"]["streams"] if r["name"] == f"two_{uid}"]
    per_run = [
        next(s for s in run["streams"] if s["name"] == f"two_{uid}")["sample_count"]
        for run in meta["recording"]["runs"]
    ]
    assert total["sample_count"] == sum(per_run) > 0
    for name in meta["recording"]["xdf_files"]:
        streams, _ = pyxdf.load_xdf(str(mgr.session_dir / name))
        assert streams[0]["footer"]
    mgr.close()


def test_failed_part_creation_is_reported_and_close_is_safe(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")

    def part_path(k):
        return tmp_path / "a.xdf" if k == 1 else blocker / "b.xdf"

    out = XdfOutput(part_path, split_bytes=10)
    out.add_stream(
        1, "<info><channel_format>float32</channel_format></info>", "float32"
    )
    with pytest.raises(OutputFailed, match="cannot create"):
        out.next_part()
    out.close()  # no TypeError: the part that failed has no file
    assert out.closed and out.failed


def test_failed_event_append_keeps_log_valid(session_root, monkeypatch):
    session = Session(create_session_folder(session_root, "full"))
    session.log_event("marker", {"label": "kept"})

    real_pwrite = os.pwrite
    calls = []

    def short_once(fd, data, pos):
        calls.append(len(data))
        if len(calls) == 1:  # half the event reaches the disk, as when it fills up
            return real_pwrite(fd, data[: len(data) // 2], pos)
        return real_pwrite(fd, data, pos)

    monkeypatch.setattr(events_module.os, "pwrite", short_once)
    with pytest.raises(LslSessionError, match="cannot append"):
        session.log_event("marker", {"label": "lost"})
    monkeypatch.setattr(events_module.os, "pwrite", real_pwrite)
    assert [e["label"] for e in json.loads(session.paths.log.read_bytes())] == ["kept"]
    session.log_event("marker", {"label": "after"})
    labels = [e["label"] for e in json.loads(session.paths.log.read_bytes())]
    assert labels == ["kept", "after"]


def test_metadata_file_is_readable_by_group(session_root):
    folder = create_session_folder(session_root, "mode")
    umask = os.umask(0o022)
    os.umask(umask)
    mode = stat.S_IMODE((folder / "session_metadata.json").stat().st_mode)
    assert mode == 0o666 & ~umask


def test_reused_pid_is_not_taken_for_the_owner():
    me = owner_record()
    assert owner_alive({"owner": me})
    assert not owner_alive({"owner": {**me, "started": (me["started"] or 0) + 1}})
    assert not owner_alive({"owner": {**me, "boot_id": "another-boot"}})
