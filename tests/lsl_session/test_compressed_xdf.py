"""Compressed XDF (#28 item 3): ``record --compress`` writes ``.xdf.gz`` members that
stock pyxdf reads; kill -9 loses at most the last second and ``recover`` repairs the
rest; every command reads ``.xdf.gz`` and LabRecorder's zlib ``.xdfz``."""

from __future__ import annotations

import gzip
import io
import json
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pylsl
import pytest
import pyxdf
from labrecorder_support import start_labrecorder
from lsl_helpers import RegularSource, wait_until

from lsl_session.xdf._format import XdfFormatError
from lsl_session.xdf.compressed import gzip_member, inflate


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _record(root: Path, query: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--stream", query, "--no-process", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _stream(path: Path, name: str) -> dict:
    streams, _ = pyxdf.load_xdf(
        str(path), dejitter_timestamps=False, synchronize_clocks=False
    )
    return next(s for s in streams if s["info"]["name"][0] == name)


# ------------------------------------------------------------------ format


def test_members_torn_tails_zlib_and_bombs():
    parts = [np.arange(50_000, dtype=np.float32).tobytes(), b"XDF:" * 1000, b"z"]
    data = b"".join(parts)
    blob = b"".join(gzip_member(p, 6) for p in parts)
    assert gzip.decompress(blob) == data  # stock gzip reads the members as one
    out = io.BytesIO()
    r = inflate(io.BytesIO(blob), out)
    assert (r.kind, r.members, r.torn, out.getvalue()) == ("gzip", 3, False, data)
    out = io.BytesIO()
    r = inflate(io.BytesIO(blob[:-5]), out)  # kill -9 inside the last member
    assert r.torn and r.members == 2 and data.startswith(out.getvalue())
    assert r.good_size == len(parts[0]) + len(parts[1])
    out = io.BytesIO()
    r = inflate(io.BytesIO(zlib.compress(data)), out)  # LabRecorder's .xdfz
    assert (r.kind, out.getvalue()) == ("zlib", data)
    with pytest.raises(XdfFormatError, match="more than"):
        inflate(
            io.BytesIO(gzip_member(bytes(10_000_000), 9)), io.BytesIO(), limit=10**6
        )
    with pytest.raises(XdfFormatError, match="corrupt"):
        inflate(io.BytesIO(b"\x1f\x8b\x08\x00garbage" * 10), io.BytesIO())


# ------------------------------------------------------------------ record


def test_compressed_recording_reads_in_stock_pyxdf_and_equals_plain(tmp_path, uid):
    src = RegularSource(f"gz_{uid}", f"gz_{uid}", channels=16, srate=500).start()
    try:
        query = f"source_id='gz_{uid}'"
        plain = _record(tmp_path / "plain", query, "--duration", "4")
        packed = _record(tmp_path / "packed", query, "--duration", "4", "--compress")
        for proc in (plain, packed):
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-2000:]
    finally:
        src.stop()
    (gz,) = (tmp_path / "packed").glob("*/*.xdf.gz")
    (xdf,) = (tmp_path / "plain").glob("*/*.xdf")
    assert not list((tmp_path / "packed").glob("*/*.xdf"))
    a, b = _stream(xdf, f"gz_{uid}"), _stream(gz, f"gz_{uid}")
    assert len(b["time_stamps"]) > 1000
    assert b["footer"]["info"]["sample_count"] == [str(len(b["time_stamps"]))]
    common, ia, ib = np.intersect1d(
        a["time_stamps"], b["time_stamps"], return_indices=True
    )
    assert len(common) > 0.8 * min(len(a["time_stamps"]), len(b["time_stamps"]))
    np.testing.assert_array_equal(a["time_series"][ia], b["time_series"][ib])
    # the values are the sample index: nothing lost inside the file
    idx = b["time_series"][:, 0]
    assert np.all(np.diff(idx) == 1)
    assert gz.stat().st_size < 0.6 * xdf.stat().st_size
    meta = json.loads((gz.parent / "session_metadata.json").read_text())
    assert meta["recording"]["xdf_files"] == [gz.name]
    proc = _cli("process", str(gz), "--root", str(tmp_path / "elsewhere"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip().splitlines()[-1]) == gz.parent  # in place
    assert not (tmp_path / "elsewhere").exists()
    info = json.loads(_cli("info", str(gz), "--json").stdout)
    assert info["file_size"] == gz.stat().st_size < info["xdf_size"]


def test_kill_9_loses_at_most_the_last_second_and_recover_repairs(tmp_path, uid):
    src = RegularSource(f"k9_{uid}", f"k9_{uid}", channels=8, srate=1000).start()
    try:
        proc = _record(tmp_path, f"source_id='k9_{uid}'", "--compress")
        assert wait_until(lambda: list(tmp_path.glob("*/*.xdf.gz")), 30)
        (gz,) = tmp_path.glob("*/*.xdf.gz")
        assert wait_until(lambda: gz.stat().st_size > 20_000, 30)
        time.sleep(1.2)
        proc.send_signal(signal.SIGKILL)
        killed_at = pylsl.local_clock()
        proc.communicate(timeout=30)
    finally:
        src.stop()
    rec = _cli("recover", str(gz.parent), "--json")
    assert rec.returncode == 0, rec.stderr[-2000:]
    assert "Traceback" not in rec.stderr
    s = _stream(gz, f"k9_{uid}")  # stock pyxdf, after the repair
    stamps = s["time_stamps"]
    assert s["footer"]["info"]["sample_count"] == [str(len(stamps))]
    assert np.all(np.diff(s["time_series"][:, 0]) == 1)  # contiguous, no hole
    assert killed_at - stamps[-1] < 1.6  # at most the last second (+ a pull)
    size = gz.stat().st_size
    again = _cli("recover", str(gz.parent), "--json")
    assert again.returncode == 0
    assert gz.stat().st_size == size  # idempotent
    report = json.loads(again.stdout)
    text = json.dumps(report)
    assert "appended" not in text and "cut a torn" not in text


# ------------------------------------------------------------- any command


@pytest.fixture
def labrecorder_file(tmp_path, uid):
    """A real LabRecorder-engine recording of an EEG stream and markers."""
    eeg = RegularSource(f"lrz_{uid}", f"lrz_{uid}", channels=4, srate=250).start()
    markers = pylsl.StreamOutlet(
        pylsl.StreamInfo(f"lrzm_{uid}", "Markers", 1, 0, "string", f"lrzm_{uid}")
    )
    out = tmp_path / "lr.xdf"
    proc = start_labrecorder(out, 3.0, f"lrz_{uid}", f"lrzm_{uid}")
    end = time.monotonic() + 60
    k = 0
    while proc.poll() is None and time.monotonic() < end:
        markers.push_sample([f"m{k}"])
        k += 1
        time.sleep(0.1)
    proc.communicate(timeout=60)
    eeg.stop()
    assert out.is_file()
    return out


@pytest.mark.parametrize("kind", ["xdfz-zlib", "xdf.gz"])
def test_every_command_reads_compressed_labrecorder_files(
    tmp_path, uid, labrecorder_file, kind
):
    raw = labrecorder_file.read_bytes()
    if kind == "xdfz-zlib":  # LabRecorder built with zlib: one zlib stream
        path = tmp_path / "sub-01_task-x_eeg.xdfz"
        path.write_bytes(zlib.compress(raw))
        with pytest.raises(OSError, match="Not a gzipped file"):
            pyxdf.load_xdf(str(path))  # what pyxdf does with it today
    else:
        path = tmp_path / "sub-01_task-x_eeg.xdf.gz"
        path.write_bytes(gzip.compress(raw))
    before = path.read_bytes()
    info = _cli("info", str(path), "--json")
    assert info.returncode == 0, info.stderr[-2000:]
    names = {s["name"] for s in json.loads(info.stdout)["streams"]}
    assert names == {f"lrz_{uid}", f"lrzm_{uid}"}
    root = tmp_path / "rec"
    proc = _cli("process", str(path), "--root", str(root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert (folder / "processing" / "report.html").is_file()
    exp = _cli("export", str(folder), "--csv")
    assert exp.returncode == 0, exp.stderr[-2000:]
    csv = next((folder / "exports" / "csv").glob(f"lrz_{uid}*.csv"))
    assert len(csv.read_text().splitlines()) > 500
    rec = _cli("recover", str(folder))
    assert rec.returncode == 0, rec.stderr[-2000:]
    imp = _cli("import", str(path), "--root", str(tmp_path / "imp"))
    assert imp.returncode == 0, imp.stderr[-2000:]
    replay = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "replay", str(path),
         "--stream", f"source_id='lrz_{uid}'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    found = pylsl.resolve_bypred(f"source_id='lrz_{uid}'", 1, 20.0)
    replay.terminate()
    _out, err = replay.communicate(timeout=60)
    assert found and "Traceback" not in err, err[-2000:]
    assert path.read_bytes() == before  # never modified
