"""Session recovery: metadata rebuild, event log repair, file checks, CLI (SPEC §9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from click.testing import CliRunner

from lsl_session.cli.recover import recover_command
from lsl_session.errors import SessionNotFoundError, SessionStateError
from lsl_session.metadata import read_metadata
from lsl_session.recovery import (
    diagnose_session,
    needs_recovery,
    recover_root,
    recover_session,
    repair_event_log,
)
from lsl_session.session import Session, create_session_folder, sha256_file
from lsl_session.xdf.writer import (
    encode_clock_offset,
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
)

#: Helper files (lock, disk reserve) hold no data; recover removes them.
HELPERS = {".session.lock", ".lsl_session_reserve"}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in HELPERS
    }


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _xml(name: str, fmt: str, nch: int, srate: float) -> str:
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>T{name}</type>'
        f"<channel_count>{nch}</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>{fmt}</channel_format><source_id>src/{name}</source_id>"
        f"<hostname>lab</hostname></info>"
    )


def write_xdf(path: Path, *, footers: bool, tear: int = 0) -> dict[str, int]:
    stamps = 500.0 + np.arange(50) / 50
    parts = [
        encode_file_header(),
        encode_stream_header(1, _xml("EEG", "float32", 2, 50.0)),
        encode_stream_header(2, _xml("Mk", "string", 1, 0.0)),
        encode_clock_offset(1, 500.0, -1.5),
        encode_clock_offset(2, 500.0, -1.5),
        encode_samples(1, stamps, np.ones((50, 2), "float32"), "float32"),
        encode_samples(2, stamps[:3], [["a"], ["b"], ["c"]], "string"),
    ]
    if footers:
        parts.append(
            encode_stream_footer(1, stamps[0], stamps[-1], 50, [(500.0, -1.5)])
        )
        parts.append(encode_stream_footer(2, stamps[0], stamps[2], 3, [(500.0, -1.5)]))
    data = b"".join(parts)
    path.write_bytes(data[: len(data) - tear])
    return {"EEG": 50, "Mk": 3}


def make_session(root: Path, *, status: str, footers: bool = True, tear: int = 0):
    folder = create_session_folder(root, "pilot")
    s = Session(folder)
    s.log_event("session_start", {"name": "pilot"})
    s.add_device("phone_1", "android_phone", ["rgb_video", "gsr_data"])
    s.log_event(
        "device_connected", {"device_id": "phone_1", "device_type": "android_phone"}
    )
    video = s.paths.device_folder("phone_1", "rgb") / "phone_1_rgb_20250731_143022.mp4"
    video.write_bytes(b"fake mp4 " * 100)
    gsr = s.paths.device_folder("phone_1", "gsr") / "phone_1_gsr_20250731_143022.csv"
    gsr.write_bytes(b"t,gsr\n0,1.0\n")
    for ftype, path in (("rgb", video), ("gsr", gsr)):
        entry = s.add_file("phone_1", ftype, path)
        s.log_event("file_received", {"device_id": "phone_1", **entry})
    counts = write_xdf(s.paths.xdf(1), footers=footers, tear=tear)

    def change(meta):
        meta["status"] = status
        meta["recording"]["xdf_files"] = [s.paths.xdf(1).name]
        if status in ("recording", "active", "processing"):
            meta["owner"] = {"pid": dead_pid(), "host": os.uname().nodename}

    s.update(change)
    s.close()
    return folder, counts


def assert_kept(before: dict[str, bytes], folder: Path) -> None:
    after = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(before) <= after
    assert not HELPERS & after  # and no helper file is left


def test_healthy_completed_session_has_nothing_to_do(session_root):
    folder, _ = make_session(session_root, status="completed")
    before = snapshot(folder)
    report = recover_session(folder)
    assert report.nothing_to_do
    assert report.actions == []
    assert report.problems == []
    assert snapshot(folder) == before
    assert diagnose_session(folder) == []
    assert recover_root(session_root) == []


def test_interrupted_session_is_repaired_and_marked(session_root):
    folder, counts = make_session(
        session_root, status="recording", footers=False, tear=7
    )
    log = folder / f"{folder.name}_log.json"
    log.write_bytes(log.read_bytes()[:-3] + b',\n{"event": "marker", "ti')
    assert needs_recovery(folder)
    before = snapshot(folder)
    diag = diagnose_session(folder)
    assert any("torn" in d for d in diag)
    assert snapshot(folder) == before

    [report] = recover_root(session_root)
    assert report.interrupted
    assert report.status == "recovered"
    assert_kept(before, folder)
    meta = read_metadata(folder)
    assert meta["status"] == "recovered"
    assert "owner" not in meta
    assert meta["recovery"]["previous_status"] == "recording"
    assert meta["recovery"]["actions"] == report.actions
    assert meta["end_time"]
    assert meta["duration_s"] is not None
    names = {s["name"]: s["sample_count"] for s in meta["recording"]["streams"]}
    assert names == {"EEG": counts["EEG"], "Mk": 0}  # its only chunk was torn
    events = json.loads(log.read_bytes())
    assert events[-1]["event"] == "recovered"
    assert [e["event"] for e in events[:-1]] == [
        "session_start",
        "device_connected",
        "file_received",
        "file_received",
    ]
    torn = list(folder.glob(f"{log.name}.torn-*"))
    assert len(torn) == 1
    assert torn[0].read_bytes() == b'{"event": "marker", "ti'
    tails = list(folder.glob("*.xdf.torn-tail*"))
    assert len(tails) == 1
    assert len(tails[0].read_bytes()) > 0
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    assert all("footer" in s for s in streams)
    # idempotent
    again = snapshot(folder)
    assert recover_session(folder).nothing_to_do
    assert snapshot(folder) == again
    assert not needs_recovery(folder)


@pytest.mark.parametrize("damage", ["deleted", "corrupt", "not_an_object"])
def test_metadata_is_rebuilt(session_root, damage):
    folder, counts = make_session(session_root, status="completed", footers=False)
    original = read_metadata(folder)
    meta_path = folder / "session_metadata.json"
    if damage == "deleted":
        meta_path.unlink()
    elif damage == "corrupt":
        meta_path.write_bytes(meta_path.read_bytes()[:57])
    else:
        meta_path.write_text("[1, 2]")
    broken = meta_path.read_bytes() if meta_path.exists() else None
    before = snapshot(folder)
    assert needs_recovery(folder)
    report = recover_session(folder)
    assert_kept(before, folder)
    meta = read_metadata(folder)
    assert meta["status"] == "recovered"
    assert meta["session_id"] == folder.name
    assert meta["name"] == "pilot"
    assert meta["start_time"].startswith(folder.name[6:10])
    assert meta["devices"]["phone_1"]["device_type"] == "android_phone"
    assert set(meta["devices"]["phone_1"]["capabilities"]) == {"rgb_video", "gsr_data"}
    rebuilt = {f["file_path"]: f for f in meta["files"]["phone_1"]}
    for entry in original["files"]["phone_1"]:
        got = rebuilt[entry["file_path"]]
        assert (
            got["sha256"] == entry["sha256"] == sha256_file(folder / entry["file_path"])
        )
        assert got["file_size"] == entry["file_size"]
        assert got["file_type"] == entry["file_type"]
    streams = {s["name"]: s for s in meta["recording"]["streams"]}
    assert {k: v["sample_count"] for k, v in streams.items()} == counts
    assert streams["EEG"]["channel_count"] == 2
    assert streams["EEG"]["nominal_srate"] == 50
    assert streams["EEG"]["source_id"] == "src/EEG"
    assert streams["EEG"]["hostname"] == "lab"
    assert streams["Mk"]["type"] == "TMk"
    corrupt = list(folder.glob("session_metadata.json.corrupt-*"))
    if broken is None:
        assert corrupt == []
    else:
        assert [p.read_bytes() for p in corrupt] == [broken]
    assert any("rebuilt" in a for a in report.actions)
    assert recover_session(folder).nothing_to_do


def test_metadata_rebuilt_without_event_log(session_root):
    folder, _ = make_session(session_root, status="recording")
    (folder / "session_metadata.json").unlink()
    (folder / f"{folder.name}_log.json").unlink()
    (folder / "webcam" / "webcam_1_20250731_143022.mp4").write_bytes(b"v" * 10)
    recover_session(folder)
    meta = read_metadata(folder)
    assert meta["devices"]["webcam_1"]["device_type"] == "pc_webcam"
    assert (
        meta["files"]["webcam_1"][0]["file_path"]
        == "webcam/webcam_1_20250731_143022.mp4"
    )
    assert meta["devices"]["phone_1"]["device_type"] is None
    events = json.loads((folder / f"{folder.name}_log.json").read_bytes())
    assert [e["event"] for e in events] == ["recovered"]


@pytest.mark.parametrize("change", ["deleted", "modified", "same_size"])
def test_changed_or_missing_files_are_reported(session_root, change):
    folder, _ = make_session(session_root, status="completed")
    video = next((folder / "devices" / "phone_1" / "rgb_videos").iterdir())
    if change == "deleted":
        video.unlink()
    elif change == "modified":
        video.write_bytes(b"other")
    else:
        data = bytearray(video.read_bytes())
        data[3] ^= 0xFF
        video.write_bytes(bytes(data))
    before = snapshot(folder)
    report = recover_session(folder)
    word = "missing" if change == "deleted" else "changed"
    assert any(word in p and video.name in p for p in report.problems)
    assert report.actions == []
    assert snapshot(folder) == before
    assert any(word in p for p in diagnose_session(folder))
    result = CliRunner().invoke(recover_command, [str(folder)])
    assert result.exit_code == 0
    assert word in result.output


def test_changed_file_reported_after_metadata_rebuild(session_root):
    folder, _ = make_session(session_root, status="completed")
    (folder / "session_metadata.json").unlink()
    gsr = next((folder / "devices" / "phone_1" / "sensor_data").iterdir())
    gsr.write_bytes(b"tampered")
    report = recover_session(folder)
    assert any("changed" in p and gsr.name in p for p in report.problems)


def test_torn_event_log_at_every_byte_of_the_last_event(tmp_path):
    folder = create_session_folder(tmp_path, "log")
    s = Session(folder)
    for k in range(3):
        s.log_event("marker", {"label": f"m{k}", "text": "ünïcode"})
    s.close()
    log = s.paths.log
    full = log.read_bytes()
    last_start = full.rindex(b"\n,\n") + 1
    for cut in range(last_start, len(full)):
        for old in folder.glob(f"{log.name}.torn-*"):
            old.unlink()
        log.write_bytes(full[:cut])
        rep = repair_event_log(log, s.paths.lock)
        events = json.loads(log.read_bytes())
        assert [e["label"] for e in events][:2] == ["m0", "m1"]
        assert len(events) in (2, 3)
        torn = list(folder.glob(f"{log.name}.torn-*"))
        if len(events) == 2 and rep.torn_bytes:
            assert len(torn) == 1
        s2 = Session(folder)  # the appender accepts the repaired file
        s2.log_event("marker", {"label": "after"})
        s2.close()
        assert json.loads(log.read_bytes())[-1]["label"] == "after"


def test_running_session_is_not_touched(session_root):
    folder, _ = make_session(session_root, status="completed", footers=False)
    Session(folder).set_status(
        "recording", owner={"pid": os.getpid(), "host": os.uname().nodename}
    )
    before = snapshot(folder)
    with pytest.raises(SessionStateError):
        recover_session(folder)
    assert not needs_recovery(folder)
    assert diagnose_session(folder) == []
    assert snapshot(folder) == before


def test_creation_interrupted_session_is_recovered(session_root):
    folder = create_session_folder(session_root, "early")  # creator died here
    assert needs_recovery(folder)
    [report] = recover_root(session_root)
    assert report.status == "recovered"
    assert read_metadata(folder)["status"] == "recovered"


def test_not_a_session_folder(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    with pytest.raises(SessionNotFoundError):
        recover_session(other)
    with pytest.raises(SessionNotFoundError):
        recover_session(tmp_path / "missing_20250101_120000")
    result = CliRunner().invoke(recover_command, [str(other)])
    assert result.exit_code != 0


def test_cli_group_reports_one_line_error(tmp_path):
    from lsl_session.cli import main

    if "recover" not in main.commands:
        main.add_command(recover_command)
    result = CliRunner().invoke(main, ["recover", str(tmp_path)])
    assert result.exit_code != 0
    assert "not a session folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_root_summary_and_json(session_root):
    folder, _ = make_session(session_root, status="recording", footers=False, tear=3)
    healthy, _ = make_session(session_root, status="completed")
    runner = CliRunner()
    first = runner.invoke(recover_command, ["--root", str(session_root), "--json"])
    assert first.exit_code == 0, first.output
    [entry] = json.loads(first.output)
    assert entry["session_id"] == folder.name
    assert entry["status"] == "recovered"
    assert entry["xdf"][0]["torn_bytes"] >= 3  # the whole torn chunk
    assert healthy.name not in first.output
    text = runner.invoke(recover_command, ["--root", str(session_root)])
    assert text.output.strip() == f"no unfinished sessions under {session_root}"
    one = runner.invoke(recover_command, [str(healthy)])
    assert one.exit_code == 0
    assert "nothing to do" in one.output
