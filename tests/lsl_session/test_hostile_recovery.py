"""Hostile sessions and recover/info (issue #15, items 3, 4, 5).

Planted symbolic links (XDF, exports/, processing/, the event log), event-log lines
nested too deeply, a session that cannot be recovered among good ones, and the
memory of `info`/`recover` on a large file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from test_processing_support import stream_xml
from test_recovery import make_session

from lsl_session.errors import UnsafePathError
from lsl_session.fsutil import ensure_inside
from lsl_session.processing.pipeline import export_session, process_session
from lsl_session.recovery import recover_root, recover_session
from lsl_session.recovery.xdf_repair import repair_xdf
from lsl_session.session import Session, create_session_folder
from lsl_session.xdf import XdfWriter, load_raw, summarize

EEG = [("a", "uV", "eeg"), ("b", "uV", "eeg")]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _processable(root: Path, name: str = "sym") -> Path:
    folder = create_session_folder(root, name)
    with XdfWriter(folder / f"{folder.name}.xdf") as w:
        w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", EEG, 100.0))
        w.write_samples(1, 1000 + np.arange(100) / 100.0, np.ones((100, 2), "f4"))
        w.write_stream_footers()
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"]["xdf_files"] = [f"{folder.name}.xdf"]
    meta_path.write_text(json.dumps(meta))
    return folder


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "keep.txt").write_text("not yours")
    return out


def _plant(link: Path, target: Path) -> None:
    if link.is_dir():
        import shutil

        shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=True)


# ------------------------------------------------------------------ symlinks
@pytest.mark.parametrize("where", ["exports", "processing", "exports/csv"])
def test_process_never_writes_through_a_planted_symlink(tmp_path, where):
    folder = _processable(tmp_path / "root")
    outside = _outside(tmp_path)
    _plant(folder / where, outside)
    session = Session(folder)
    try:
        run = process_session(session, hand_segmentation=False)
        export = export_session(session, csv=True, mat=True, fif=True)
    finally:
        session.close()
    assert sorted(p.name for p in outside.rglob("*")) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "not yours"
    errors = run["errors"] + export["errors"]
    assert errors and all("symbolic link" in e for e in errors), errors
    assert "synchronized_data" in run["steps"]


def test_process_cli_names_the_symlink_in_one_line(tmp_path):
    folder = _processable(tmp_path / "root")
    _plant(folder / "exports", _outside(tmp_path))
    proc = _cli("process", str(folder), "--no-hand-segmentation")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert "exports" in line and "symbolic link" in line


def test_ensure_inside_rejects_links_and_dotdot(tmp_path):
    root = tmp_path / "s"
    (root / "a").mkdir(parents=True)
    assert ensure_inside(root, root / "a" / "new.txt") == root / "a" / "new.txt"
    with pytest.raises(UnsafePathError):
        ensure_inside(root, root / ".." / "x")
    (root / "b").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        ensure_inside(root, root / "b" / "x")


def test_recover_leaves_a_symlinked_xdf_outside_alone(tmp_path):
    """The session's XDF is a link to a torn file elsewhere: never cut or extended."""
    root = tmp_path / "root"
    root.mkdir()
    folder, _ = make_session(root, status="recording", footers=False, tear=5)
    xdf = folder / f"{folder.name}.xdf"
    outside = tmp_path / "victim.xdf"
    outside.write_bytes(xdf.read_bytes())
    before = outside.read_bytes()
    xdf.unlink()
    xdf.symlink_to(outside)
    report = recover_session(folder)
    assert outside.read_bytes() == before
    assert not list(tmp_path.glob("victim.xdf.torn*"))
    assert any("symbolic link; left alone" in p for p in report.problems)
    proc = _cli("recover", str(folder))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert outside.read_bytes() == before


def test_repair_xdf_refuses_symlink_even_when_called_directly(tmp_path):
    target = tmp_path / "t.xdf"
    target.write_bytes(b"XDF:\x01\x05\x01\x00<in")  # torn FileHeader
    link = tmp_path / "l.xdf"
    link.symlink_to(target)
    report = repair_xdf(link)
    assert not report.changed and target.read_bytes() == b"XDF:\x01\x05\x01\x00<in"


def test_event_log_symlink_is_not_appended_through(tmp_path):
    folder = _processable(tmp_path / "root")
    outside = tmp_path / "victim.json"
    outside.write_bytes(b"[\n]\n")
    log = Session(folder).paths.log
    log.unlink()
    log.symlink_to(outside)
    session = Session(folder)
    try:
        with pytest.raises(UnsafePathError):
            session.log_event("marker", {"label": "x"})
    finally:
        session.close()
    assert outside.read_bytes() == b"[\n]\n"


# ------------------------------------------------------------ nesting, --root
def _deep_json(depth: int) -> str:
    return "{" + '"a":[' * depth + "1" + "]" * depth + "}"


def test_deeply_nested_event_log_line_is_set_aside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    folder, _ = make_session(root, status="recording")
    log = folder / f"{folder.name}_log.json"
    data = log.read_bytes()
    assert data.endswith(b"\n]\n")
    log.write_bytes(data[:-3] + b"\n,\n" + _deep_json(5_000).encode() + b"\n]\n")
    proc = _cli("process", str(folder), "--no-hand-segmentation")
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert "1 unreadable line(s) skipped" in proc.stderr
    for args in (["info", str(folder)], ["recover", str(folder)]):
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert "RecursionError" not in proc.stderr + proc.stdout
    events = json.loads(log.read_bytes())
    assert events[0]["event"] == "session_start" and events[-1]["event"] == "recovered"
    (torn,) = folder.glob(f"{log.name}.torn-*")
    assert torn.stat().st_size > 10_000  # the deep line, kept aside, not lost


def test_recover_root_continues_past_a_session_it_cannot_recover(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    bad, _ = make_session(root, status="recording")
    meta_path = bad / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["files"] = ["not", "a", "mapping"]  # wrong types in valid JSON
    meta_path.write_text(json.dumps(meta))
    deep = _processable(root, "deep")  # a StreamHeader nested 3,000 deep
    with XdfWriter(deep / f"{deep.name}.xdf") as w:
        nest = "<a>" * 3000 + "</a>" * 3000
        w.write_stream_header(
            1, stream_xml("eeg", "EEG", "float32", EEG, 100.0, extra_desc=nest)
        )
    meta_path = deep / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["status"] = "recording"
    meta_path.write_text(json.dumps(meta))
    good, _ = make_session(root, status="recording", footers=False, tear=3)
    reports = {r.folder.name: r for r in recover_root(root)}
    assert set(reports) == {bad.name, deep.name, good.name}
    assert reports[good.name].status == "recovered"
    assert reports[deep.name].status == "recovered"
    assert any("nested deeper than 64" in p for p in reports[deep.name].problems)
    assert any("recovery failed" in p for p in reports[bad.name].problems)
    proc = _cli("recover", "--root", str(root))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr


def test_hostile_names_are_clipped_in_problems(tmp_path):
    from lsl_session.xdf import encode_file_header, encode_stream_header

    bad_format = stream_xml("x" * 100_000, "EEG", "float33", EEG, 1.0)
    bad_count = stream_xml("y", "EEG", "float32", EEG, 1.0).replace(
        "2</channel_count", "z" * 100_000 + "</channel_count"
    )
    data = (
        encode_file_header()
        + encode_stream_header(1, bad_format.replace("float33", "f" * 100_000))
        + encode_stream_header(2, bad_count)
    )
    problems = summarize(data)["problems"]
    assert problems and all(len(p) <= 400 for p in problems)


def test_problem_list_is_bounded(tmp_path):
    """10,000 broken chunks each followed by a Boundary: 100 lines + one summary."""
    from lsl_session.xdf import encode_boundary, encode_file_header

    data = encode_file_header() + (b"\x02\xff" + encode_boundary()) * 10_000
    problems = load_raw(data).problems
    assert len(problems) == 101 and "more problem" in problems[-1]


# ------------------------------------------------------------------ memory
def _big_file(path: Path, n_chunks: int) -> int:
    block = np.ones((500, 32), "f4")
    with XdfWriter(path) as w:
        w.write_stream_header(
            1, stream_xml("eeg", "EEG", "float32", [("c", "", "")] * 32, 1000.0)
        )
        for k in range(n_chunks):
            w.write_samples(1, 1000 + (k * 500 + np.arange(500)) / 1000.0, block)
            if k % 50 == 0:
                w.write_boundary()
    return path.stat().st_size


def test_info_and_recover_memory_is_bounded_by_the_chunk(tmp_path):
    """~34 MB without footers: traced peak stays near one chunk (68 KB), not the file."""
    path = tmp_path / "big.xdf"
    size = _big_file(path, 500)
    tracemalloc.start()
    try:
        info = summarize(path)
        _, peak_info = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        report = repair_xdf(path)
        _, peak_repair = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info["streams"][0]["sample_count"] == 250_000
    assert report.footers_added == [1]
    assert size > 30e6
    assert peak_info < 2e6 and peak_repair < 2e6, (peak_info, peak_repair)


@pytest.mark.slow
def test_info_recover_peak_rss_on_a_320_mb_file(tmp_path):
    """The benchmark script at 320 MB: peak RSS of each command below 150 MB."""
    script = (
        Path(__file__).resolve().parents[2] / "benchmarks" / "info_recover_memory.py"
    )
    proc = subprocess.run(
        [sys.executable, str(script), "--size-mb", "320", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "below the 150 MB bound" in proc.stdout


def test_recorder_never_writes_through_a_planted_xdf_symlink(tmp_path, uid):
    """A link at the session's XDF path: to a file (left intact, the recording goes
    to a new part) or dangling (start fails, nothing created at its target)."""
    from lsl_session.errors import RecorderError
    from lsl_session.manager import SessionManager

    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"precious")
    mgr = SessionManager(tmp_path / "root", lsl_events=False)
    try:
        mgr.create_session("planted")
        paths = mgr.session.paths
        paths.xdf(1).symlink_to(victim)
        mgr.start_recording([f"source_id='none_{uid}'"], initial_wait=0.1)
        summary = mgr.stop_recording()
        assert summary["xdf_files"] == [paths.xdf(2).name]
        assert victim.read_bytes() == b"precious"
        mgr.end_session(process=False)
        mgr.reset()
        mgr.create_session("dangling")
        paths = mgr.session.paths
        paths.xdf(1).symlink_to(tmp_path / "nowhere.xdf")
        with pytest.raises(RecorderError, match="cannot create"):
            mgr.start_recording([f"source_id='none_{uid}'"], initial_wait=0.1)
        assert not (tmp_path / "nowhere.xdf").exists()
        assert not (paths.root / ".lsl_session_reserve").exists()
    finally:
        mgr.close()


def test_deeply_nested_metadata_is_unreadable_not_a_crash(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    folder, _ = make_session(root, status="recording")
    meta = folder / "session_metadata.json"
    meta.write_text(_deep_json(5_000))
    for args in (["info", str(folder)], ["list", "--root", str(root)]):
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert "(it was corrupt)" in _cli("info", str(folder)).stdout
    report = recover_session(folder)  # rebuilt from the folder; the bad copy kept
    assert report.status == "recovered"
    assert list(folder.glob("session_metadata.json.corrupt-*"))
