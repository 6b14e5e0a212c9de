"""``import`` and ``recover`` never modify a file outside the session (issue #31).

The CLI as a subprocess on real XDF files: a torn file with a year-9999
FileHeader, a footer with ``last_timestamp = 1e300``, a torn file that is then
recovered, a session XDF hard-linked to a file outside. The original's sha256 is
unchanged every time, and no half-imported session is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from lsl_session.xdf.writer import (
    encode_clock_offset,
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
)

N = 1000
SRATE = 100.0


def _xdf(
    path: Path,
    *,
    when: str = "2024-05-01T10:00:00+0000",
    last: float | None = None,
    torn: bool = False,
) -> Path:
    xml = (
        '<?xml version="1.0"?><info><name>S</name><type>EEG</type>'
        "<channel_count>2</channel_count><nominal_srate>100</nominal_srate>"
        "<channel_format>float32</channel_format><source_id>s1</source_id></info>"
    )
    ts = 100 + np.arange(N) / SRATE
    data = encode_file_header({"datetime": when}) + encode_stream_header(1, xml)
    for k in range(0, N, 100):
        data += encode_samples(
            1, ts[k : k + 100], np.ones((100, 2), np.float32), "float32"
        )
    data += encode_clock_offset(1, 200.0, 0.001)
    if torn:
        data = data[:-7]  # a crash in the middle of the last chunk
    else:
        data += encode_stream_footer(
            1, ts[0], ts[-1] if last is None else last, N, [(200.0, 0.001)]
        )
    path.write_bytes(data)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _sessions(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir()] if root.exists() else []


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("year9999", "out of range"),
        ("footer1e300", "last_timestamp 1e+300 is out of range"),
    ],
)
def test_import_out_of_range_is_one_line_and_leaves_nothing(tmp_path, kind, message):
    if kind == "year9999":
        src = _xdf(tmp_path / "y.xdf", when="9999-12-31T23:59:59+0000", torn=True)
    else:
        src = _xdf(tmp_path / "f.xdf", last=1e300)
    before = _sha(src)
    root = tmp_path / "rec"
    proc = _cli("import", str(src), "--root", str(root))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert str(src.name) in lines[0] and message in lines[0]
    # no half-imported (active) session, the original untouched and unlinked
    assert _sessions(root) == []
    assert _sha(src) == before and src.stat().st_nlink == 1
    # recover --root finds nothing to touch
    proc = _cli("recover", "--root", str(root))
    assert "Traceback" not in proc.stderr
    assert _sha(src) == before


def test_torn_file_is_copied_and_recover_repairs_only_the_copy(tmp_path):
    src = _xdf(tmp_path / "torn.xdf", torn=True)
    before = _sha(src)
    root = tmp_path / "rec"
    proc = _cli("import", str(src), "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    (folder,) = _sessions(root)
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert [e["method"] for e in meta["recording"]["imported"]] == ["copy"]
    assert src.stat().st_nlink == 1
    # make the session look crashed, as after a killed import, and recover it
    meta["status"] = "active"
    (folder / "session_metadata.json").write_text(json.dumps(meta))
    proc = _cli("recover", str(folder))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert _sha(src) == before and src.stat().st_size == len(src.read_bytes())
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    assert len(streams[0]["time_stamps"]) > 0


def test_complete_file_is_hard_linked_and_stays_unchanged(tmp_path):
    src = _xdf(tmp_path / "whole.xdf")
    before = _sha(src)
    root = tmp_path / "rec"
    proc = _cli("import", str(src), "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    (folder,) = _sessions(root)
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert [e["method"] for e in meta["recording"]["imported"]] == ["hardlink"]
    assert meta["status"] == "completed"
    proc = _cli("recover", str(folder))
    assert "Traceback" not in proc.stderr
    assert _sha(src) == before


def test_recover_writes_a_copy_of_a_hard_linked_torn_file(tmp_path):
    """The issue's path: a session XDF that is the same inode as a file outside."""
    outside = _xdf(tmp_path / "outside.xdf", torn=True)
    before, size = _sha(outside), outside.stat().st_size
    root = tmp_path / "rec"
    proc = _cli(
        "import", str(_xdf(tmp_path / "seed.xdf", torn=True)), "--root", str(root)
    )
    assert proc.returncode == 0, proc.stderr
    (folder,) = _sessions(root)
    inside = folder / f"{folder.name}.xdf"
    inside.unlink()
    os.link(outside, inside)  # as an old import left it
    assert outside.stat().st_nlink == 2
    meta = json.loads((folder / "session_metadata.json").read_text())
    meta["status"] = "active"
    (folder / "session_metadata.json").write_text(json.dumps(meta))
    proc = _cli("recover", "--root", str(root))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert "other hard links" in proc.stdout
    # the original is byte for byte what it was; the session has its own copy
    assert _sha(outside) == before and outside.stat().st_size == size
    assert outside.stat().st_nlink == 1 and inside.stat().st_nlink == 1
    assert inside.stat().st_ino != outside.stat().st_ino
    streams, _ = pyxdf.load_xdf(str(inside))
    assert len(streams[0]["time_stamps"]) >= N - 100
    # a second run has nothing left to do and still leaves the original alone
    _cli("recover", str(folder))
    assert _sha(outside) == before
