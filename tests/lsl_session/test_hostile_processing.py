"""Hostile and faulty recordings never take post-processing down (issue #15, item 3/7).

Crafted XDF files: a stamp 10^7 s late, an absurd channel count, XML nested 3,000
deep; a real small tmpfs for the free-space check; formula-like markers for CSV.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pylsl
import pytest
import scipy.io
from lsl_helpers import wait_until
from system_tools import missing
from test_processing_support import stream_xml

from lsl_session.manager import SessionManager
from lsl_session.processing.pipeline import process_session
from lsl_session.processing.tables import robust_span
from lsl_session.session import Session, create_session_folder
from lsl_session.xdf import XdfWriter

EEG = [("a", "uV", "eeg"), ("b", "uV", "eeg")]


def _session(root: Path, name: str, write, recording: dict | None = None) -> Path:
    """A session folder whose XDF is written by ``write(XdfWriter)``."""
    folder = create_session_folder(root, name)
    with XdfWriter(folder / f"{folder.name}.xdf") as w:
        write(w)
        w.write_stream_footers()
    meta_path = folder / "session_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["recording"].update(xdf_files=[f"{folder.name}.xdf"], **(recording or {}))
    meta_path.write_text(json.dumps(meta))
    return folder


def _late_sample(w: XdfWriter, n: int = 100, late: float = 1e7) -> None:
    w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", EEG, 100.0))
    ts = 1000.0 + np.arange(n) / 100.0
    ts[-1] += late
    w.write_samples(1, ts, np.ones((n, 2), "f4"))


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _aligned(folder: Path) -> pd.DataFrame:
    (path,) = (folder / "processing" / "synchronized_data").glob("aligned_*.parquet")
    return pq.read_table(path).to_pandas()


# ------------------------------------------------------------ grid bounds
def test_one_late_sample_does_not_stretch_the_grid(tmp_path):
    """A 10^7 s late stamp in a ~3 KB file: the grid stays ~1 s (was 5.7 GiB)."""
    folder = _session(tmp_path, "late", _late_sample)
    assert (folder / f"{folder.name}.xdf").stat().st_size < 4000
    session = Session(folder)
    try:
        run = process_session(session, hand_segmentation=False)
    finally:
        session.close()
    assert run["steps"]["synchronized_data"]["status"] == "ok", run["errors"]
    aligned = _aligned(folder)
    assert 90 <= len(aligned) <= 101  # the 99 good samples at 100 Hz
    assert _tree_bytes(folder) < 2_000_000
    # the late sample itself is kept in the stream's own table
    stream = pq.read_table(folder / "processing/synchronized_data/eeg.parquet")
    assert stream.num_rows == 100


def test_recorder_window_bounds_the_grid(tmp_path):
    """Recorder start/stop in the metadata: stray stamps outside it are cut off."""

    def write(w: XdfWriter) -> None:
        w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", EEG, 100.0))
        ts = 1000.0 + np.arange(300) / 100.0
        ts[100] -= 5000.0  # out of window, too close to be a cluster of its own
        ts[200] += 50.0
        w.write_samples(1, ts, np.ones((300, 2), "f4"))

    window = {"start_lsl_time": 1000.0, "stop_lsl_time": 1003.0}
    folder = _session(tmp_path, "win", write, {"runs": [window], **window})
    session = Session(folder)
    try:
        run = process_session(session, hand_segmentation=False)
    finally:
        session.close()
    assert run["steps"]["synchronized_data"]["status"] == "ok", run["errors"]
    aligned = _aligned(folder)
    assert aligned["lsl_time"].min() >= 999.0 and aligned["lsl_time"].max() <= 1004.0


def test_far_apart_clusters_give_a_clear_grid_error(tmp_path):
    """Two real-looking clusters 10^6 s apart: a clear error, no 10^8-row table."""

    def write(w: XdfWriter) -> None:
        w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", EEG, 100.0))
        ts = np.array([1000.0, 1000.01, 1000.02, 1e6, 1e6 + 0.01, 1e6 + 0.02])
        w.write_samples(1, ts, np.ones((6, 2), "f4"))

    folder = _session(tmp_path, "far", write)
    started = time.monotonic()
    proc = _cli("process", str(folder), "--no-hand-segmentation")
    assert time.monotonic() - started < 120  # the subprocess timeout is the bound
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert "aligned grid would span" in line and "stamps far outside" in line
    assert _tree_bytes(folder) < 2_000_000
    # the other outputs were still written
    assert (folder / "exports" / "csv" / "eeg.csv").is_file()


def test_robust_span_keeps_pauses_and_drops_strays():
    ts = np.concatenate([np.arange(0, 60, 0.01), np.arange(600, 660, 0.01)])
    first, last, covered = robust_span(ts)
    assert first == 0 and last == pytest.approx(659.99) and covered > 119
    first, last, _ = robust_span(np.append(ts, [1e7, np.nan, np.inf]))
    assert last == pytest.approx(659.99)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        missing("a tmpfs mount (root/CAP_SYS_ADMIN)", f"run as root: {result.stderr}")


def test_aligned_output_larger_than_free_disk_is_refused(tmp_path):
    """A real 3 MB tmpfs; --rate 100000 makes a ~50 MB grid: refused, not written."""
    mount = tmp_path / "small"
    _mount_tmpfs(mount, "3m")
    try:

        def write(w: XdfWriter) -> None:
            chans = [(f"c{k}", "uV", "eeg") for k in range(8)]
            w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", chans, 10.0))
            w.write_samples(1, 1000 + np.arange(100) / 10.0, np.ones((100, 8), "f4"))

        folder = _session(mount, "full", write)
        proc = _cli(
            "process", str(folder), "--rate", "100000", "--no-hand-segmentation"
        )
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
        assert "synchronized_data failed" in line and "MB are free" in line
        assert not list((folder / "processing").rglob("aligned_*"))
        meta = json.loads((folder / "session_metadata.json").read_text())
        assert meta["processing"]["runs"][-1]["status"] == "partial"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_end_session_with_a_late_stamp_stays_bounded(session_root, uid):
    """A real outlet pushes one sample 10^7 s late; end_session() processes quickly."""
    info = pylsl.StreamInfo(f"late_{uid}", "EEG", 2, 100.0, pylsl.cf_float32, uid)
    outlet = pylsl.StreamOutlet(info)
    mgr = SessionManager(session_root, lsl_events=False)
    try:
        mgr.create_session("late")
        mgr.start_recording([f"source_id='{uid}'"])
        assert wait_until(lambda: outlet.have_consumers(), timeout=10)
        now = pylsl.local_clock()
        stamps = now + np.arange(150) / 100.0
        stamps[75] += 1e7
        for t in stamps:
            outlet.push_sample([1.0, 2.0], float(t))
        time.sleep(1.5)
        mgr.stop_recording()
        meta = mgr.end_session(hand_segmentation=False)
    finally:
        mgr.close()
    assert meta["status"] == "completed"
    run = meta["processing"]["runs"][-1]
    assert run["steps"]["synchronized_data"]["status"] == "ok", run["errors"]
    aligned = _aligned(mgr.session_dir)
    assert len(aligned) < 10_000
    assert _tree_bytes(mgr.session_dir) < 5_000_000


# ------------------------------------------------------------ header sanity
def _huge_channel_count(w: XdfWriter) -> None:
    xml = stream_xml("eeg", "EEG", "float32", EEG, 100.0).replace(
        "<channel_count>2<", f"<channel_count>{2**24}<"
    )
    w.write_stream_header(1, xml)
    w.write_stream_header(2, stream_xml("ok", "EEG", "float32", EEG, 100.0))
    w.write_samples(2, 1000 + np.arange(50) / 100.0, np.ones((50, 2), "f4"))


def _deep_header(w: XdfWriter) -> None:
    deep = "<a>" * 3000 + "</a>" * 3000
    w.write_stream_header(
        1, stream_xml("eeg", "EEG", "float32", EEG, 100.0, extra_desc=deep)
    )
    w.write_stream_header(2, stream_xml("ok", "EEG", "float32", EEG, 100.0))
    w.write_samples(2, 1000 + np.arange(50) / 100.0, np.ones((50, 2), "f4"))


@pytest.mark.parametrize(
    ("writer", "needle"),
    [
        (_huge_channel_count, "larger than the whole file"),
        (_deep_header, "nested deeper than 64 levels"),
    ],
    ids=["channel_count_2^24", "xml_3000_deep"],
)
def test_crafted_header_gives_clear_problem_everywhere(tmp_path, writer, needle):
    folder = _session(tmp_path, "bad", writer)
    xdf = folder / f"{folder.name}.xdf"
    assert xdf.stat().st_size < 30_000
    for args in (["info", str(xdf)], ["info", str(folder)], ["recover", str(folder)]):
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert needle in proc.stdout
    proc = _cli("process", str(folder), "--no-hand-segmentation")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert any(
        needle in ln for ln in proc.stderr.splitlines() if ln.startswith("warning")
    )
    # the good stream is processed
    assert (folder / "processing/synchronized_data/ok.parquet").is_file()


def test_crafted_header_alone_is_a_one_line_error(tmp_path):
    def write(w: XdfWriter) -> None:
        xml = stream_xml("eeg", "EEG", "float32", EEG, 100.0).replace(
            "<channel_count>2<", f"<channel_count>{2**24}<"
        )
        w.write_stream_header(1, xml)

    folder = _session(tmp_path, "only", write)
    proc = _cli("process", str(folder), "--no-hand-segmentation")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert "larger than the whole file" in line and len(line) < 400


# ------------------------------------------------------------ CSV injection
FORMULAS = [
    '=HYPERLINK("http://evil.example","click")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tleading tab",
    "\rleading cr",
    "plain marker",
]


def test_csv_formula_cells_are_neutralised(tmp_path):
    def write(w: XdfWriter) -> None:
        w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", EEG, 10.0))
        w.write_samples(1, 1000 + np.arange(20) / 10.0, -np.ones((20, 2), "f4"))
        w.write_stream_header(
            2, stream_xml("=mk", "Markers", "string", [("=lbl", "", "")], 0.0)
        )
        w.write_samples(
            2, 1000 + np.arange(len(FORMULAS)) / 10.0, [[f] for f in FORMULAS]
        )

    folder = _session(tmp_path, "csv", write)
    session = Session(folder)
    try:
        run = process_session(session, hand_segmentation=False)
    finally:
        session.close()
    assert not run["errors"], run["errors"]
    csv = folder / "exports" / "csv"
    (marker_csv,) = [
        p for p in csv.glob("*.csv") if p.name not in ("eeg.csv", "events.csv")
    ]
    markers = pd.read_csv(marker_csv, keep_default_na=False)
    expected = ["'" + f if f[0] in "=+-@\t\r" else f for f in FORMULAS]
    assert list(markers.iloc[:, 2]) == expected
    assert markers.columns[2] == "'=lbl"
    text = (csv / "events.csv").read_bytes().decode()
    # pandas leaves a bare \r unquoted, so read the lines, not the parsed table
    lines = [ln for ln in text.split("\n") if ",'=mk," in ln]
    assert [ln.split(",'=mk,", 1)[1] for ln in lines] == [
        '"\'=HYPERLINK(""http://evil.example"",""click"")"',
        *expected[1:],
    ]
    # numeric columns untouched: negative numbers stay numbers
    eeg = pd.read_csv(csv / "eeg.csv")
    assert eeg.iloc[:, 2].dtype.kind in "if" and (eeg.iloc[:, 2] == -1).all()
    # raw values in Parquet and MAT
    sync = folder / "processing" / "synchronized_data"
    raw = pq.read_table(next(p for p in sync.glob("*mk*.parquet"))).to_pandas()
    assert list(raw.iloc[:, 2]) == FORMULAS
    raw_events = pq.read_table(sync / "events.parquet").to_pandas()
    assert list(raw_events.loc[raw_events["stream"] == "=mk", "value"]) == FORMULAS
    mat = scipy.io.loadmat(
        folder / "exports" / "matlab" / f"{folder.name}.mat", simplify_cells=True
    )
    (var,) = [
        v
        for v in mat.values()
        if isinstance(v, dict) and v.get("info", {}).get("name") == "=mk"
    ]
    assert list(var["time_series"]) == FORMULAS


def test_mne_grid_ignores_a_late_sample_and_refuses_absurd_spans(tmp_path):
    from lsl_session.processing.session_data import load_session
    from lsl_session.processing.tables import GridError

    late = _session(tmp_path, "late", _late_sample)
    raw = load_session(late).to_mne()
    assert 90 <= raw.n_times <= 101

    def far(w: XdfWriter) -> None:
        w.write_stream_header(1, stream_xml("eeg", "EEG", "float32", EEG, 100.0))
        ts = np.array([1000.0, 1000.01, 1000.02, 1e6, 1e6 + 0.01, 1e6 + 0.02])
        w.write_samples(1, ts, np.ones((6, 2), "f4"))

    with pytest.raises(GridError, match="stamps far outside the recording"):
        load_session(_session(tmp_path, "far", far)).to_mne()
