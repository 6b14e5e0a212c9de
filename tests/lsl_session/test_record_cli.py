"""``lsl-session record`` as a process: signals, SIGKILL, full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from lsl_helpers import RegularSource, wait_until

from lsl_session.recorder import Recorder
from lsl_session.recorder import output as output_module


def _start_record(root: Path, query: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lsl_session",
            "record",
            "--root",
            str(root),
            "--name",
            "sig",
            "--stream",
            query,
            "--no-process",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _xdf_of(root: Path) -> Path:
    (session,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return session / f"{session.name}.xdf"


def _wait_recording(root: Path) -> Path:
    assert wait_until(
        lambda: (
            root.exists()
            and any(
                p.suffix == ".xdf"
                for s in root.iterdir()
                if s.is_dir()
                for p in s.iterdir()
            )
        ),
        timeout=30,
    )
    return _xdf_of(root)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_footers(session_root, uid, sig):
    src = RegularSource(f"sig_{uid}", f"sig_{uid}", channels=8, srate=500).start()
    proc = _start_record(session_root, f"source_id='sig_{uid}'")
    xdf = _wait_recording(session_root)
    time.sleep(2.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    src.stop()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == str(xdf.parent)
    streams, _ = pyxdf.load_xdf(
        str(xdf), synchronize_clocks=False, dejitter_timestamps=False
    )
    by_name = {s["info"]["name"][0]: s for s in streams}
    s = by_name[f"sig_{uid}"]
    assert int(s["footer"]["info"]["sample_count"][0]) == len(s["time_stamps"]) > 0
    meta = json.loads((xdf.parent / "session_metadata.json").read_text())
    assert meta["status"] == "completed"
    recorded = {r["name"]: r for r in meta["recording"]["streams"]}
    assert recorded[f"sig_{uid}"]["sample_count"] == len(s["time_stamps"])
    assert f"{xdf.parent.name}_events" in recorded  # the session's own timeline
    events = json.loads((xdf.parent / f"{xdf.parent.name}_log.json").read_text())
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["session_start", "start_record"]
    assert "stop_record" in kinds and kinds[-1] == "session_end"


def test_sigkill_loses_at_most_about_one_second(session_root, uid):
    src = RegularSource(f"kill_{uid}", f"kill_{uid}", channels=8, srate=500).start()
    proc = _start_record(session_root, f"source_id='kill_{uid}'")
    xdf = _wait_recording(session_root)
    time.sleep(6.0)
    proc.kill()
    import pylsl

    killed_at = pylsl.local_clock()
    proc.communicate(timeout=10)
    pushed = src.stop()
    streams, _ = pyxdf.load_xdf(
        str(xdf), synchronize_clocks=False, dejitter_timestamps=False
    )
    s = {x["info"]["name"][0]: x for x in streams}[f"kill_{uid}"]
    stamps = s["time_stamps"]
    assert np.all(np.diff(s["time_series"][:, 0]) == 1)
    first = np.searchsorted(pushed, stamps[0])
    must_have = pushed[first:][pushed[first:] <= killed_at - 1.0]
    assert len(stamps) >= len(must_have)
    np.testing.assert_array_equal(stamps[: len(must_have)], must_have)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
    )
    return result.returncode == 0


def test_full_tmpfs_ends_recording_cleanly(tmp_path, uid, monkeypatch):
    """A real 1 MB tmpfs when we may mount one; else ENOSPC injected at os.write."""
    mount = tmp_path / "tiny"
    mounted = _mount_tmpfs(mount, "1m")
    if not mounted:
        budget = {"left": 600_000}
        real_write = os.write

        def limited_write(fd, data):
            if budget["left"] < len(data):
                raise OSError(28, "No space left on device")
            budget["left"] -= len(data)
            return real_write(fd, data)

        monkeypatch.setattr(output_module.os, "write", limited_write)
    src = RegularSource(f"full_{uid}", f"full_{uid}", channels=32, srate=1000).start()
    errors = []
    try:
        rec = Recorder(
            mount / "full.xdf",
            streams=[f"source_id='full_{uid}'"],
            min_free_bytes=0,
            on_error=lambda msg, summary: errors.append(msg),
        )
        rec.start()
        assert wait_until(lambda: bool(errors), timeout=30)
        src.stop()
        assert "No space left" in errors[0]
        assert rec.stopped
        streams, _ = pyxdf.load_xdf(
            str(mount / "full.xdf"), synchronize_clocks=False, dejitter_timestamps=False
        )
        values = streams[0]["time_series"][:, 0]
        assert len(values) > 100 and np.all(np.diff(values) == 1)
    finally:
        src.stop()
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)


def test_record_cli_bad_query_is_one_line_error(session_root):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsl_session",
            "record",
            "--root",
            str(session_root),
            "--stream",
            "name='x' and (",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert lines == [
        "Error: invalid stream query \"name='x' and (\": unbalanced parentheses or quotes"
    ]
    assert not any(session_root.iterdir())
