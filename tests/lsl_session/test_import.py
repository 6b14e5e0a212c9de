"""Any XDF in: ``import``, ``process FILE.xdf``, ``export FILE.xdf``, ``load_session``.

On the conformance fixtures, on split recordings of our writer, and on a real
recording made by LabRecorder's engine (the ``labrecorder`` wheel) in the test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pylsl
import pytest
import pyxdf
from labrecorder_support import start_labrecorder
from test_processing_support import make_streams, write_xdf

from lsl_session.importer import XdfImportError, import_xdf, recording_parts
from lsl_session.processing import load_session

DATA = Path(__file__).resolve().parents[1] / "data" / "xdf"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _meta(folder: Path) -> dict:
    return json.loads((folder / "session_metadata.json").read_text())


@pytest.mark.parametrize("name", ["clock_resets", "empty_streams", "minimal"])
def test_import_fixture_links_records_sha_and_leaves_original(tmp_path, name):
    src = tmp_path / f"{name}.xdf"
    shutil.copy2(DATA / f"{name}.xdf", src)
    before = (_sha(src), src.stat().st_mtime_ns, src.stat().st_size)
    proc = _cli("import", str(src), "--root", str(tmp_path / "rec"))
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder.parent == tmp_path / "rec"
    assert folder.name.startswith(f"{name.replace('_', '_')}_")
    assert (_sha(src), src.stat().st_mtime_ns, src.stat().st_size) == before
    meta = _meta(folder)
    rec = meta["recording"]
    (entry,) = rec["imported"]
    assert entry["sha256"] == before[0]
    assert entry["original"] == str(src.resolve())
    assert entry["method"] == "hardlink"
    assert _sha(folder / rec["xdf_files"][0]) == before[0]
    assert meta["status"] == "completed"
    ref, _ = pyxdf.load_xdf(
        str(src), synchronize_clocks=False, dejitter_timestamps=False
    )
    assert sorted(s["name"] for s in rec["streams"]) == sorted(
        r["info"]["name"][0] for r in ref
    )
    counts = {s["name"]: s["sample_count"] for s in rec["streams"]}
    assert counts == {r["info"]["name"][0]: len(r["time_stamps"]) for r in ref}
    assert all(s["duration_s"] is None or s["duration_s"] >= 0 for s in rec["streams"])
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    assert [e["event"] for e in events] == ["session_imported"]
    # the same file again: the same session
    again = _cli("import", str(src), "--root", str(tmp_path / "rec"))
    assert Path(again.stdout.strip().splitlines()[-1]) == folder
    assert len(list((tmp_path / "rec").iterdir())) == 1


def test_import_copy_and_file_header_datetime(tmp_path):
    # empty_streams.xdf carries a FileHeader datetime
    src = DATA / "empty_streams.xdf"
    folder = import_xdf(src, tmp_path, copy=True)
    meta = _meta(folder)
    assert meta["recording"]["imported"][0]["method"] == "copy"
    assert os.stat(folder / f"{folder.name}.xdf").st_ino != src.stat().st_ino
    header = meta["recording"]["file_header"]
    stamp = dt.datetime.strptime(header["datetime"], "%Y-%m-%dT%H:%M:%S%z")
    assert folder.name == f"empty_streams_{stamp.strftime('%Y%m%d_%H%M%S')}"
    assert dt.datetime.fromisoformat(meta["start_time"]) == stamp
    assert meta["recording"]["start_time_source"] == "FileHeader datetime"


def test_no_file_header_datetime_start_is_mtime_minus_duration(tmp_path):
    src = tmp_path / "cr.xdf"
    shutil.copy2(DATA / "clock_resets.xdf", src)  # its FileHeader has no datetime
    end = dt.datetime(2024, 5, 6, 7, 8, 9).astimezone()
    os.utime(src, (end.timestamp(), end.timestamp()))
    meta = _meta(import_xdf(src, tmp_path / "rec"))
    assert (
        meta["recording"]["start_time_source"]
        == "file modification time minus duration"
    )
    start = dt.datetime.fromisoformat(meta["start_time"])
    assert abs((end - start).total_seconds() - meta["duration_s"]) < 1.0
    assert 570 < meta["duration_s"] < 575  # across its clock reset


def test_split_recording_imported_whole(tmp_path):
    specs, _ = make_streams(duration=4.0, session_id="x_20250101_000000")
    (tmp_path / "src").mkdir()
    paths = write_xdf(tmp_path / "src" / "rec.xdf", specs, duration=4.0, parts=3)
    assert recording_parts(paths[1]) == paths
    folder = import_xdf(paths[2], tmp_path / "rec")  # any part names the recording
    meta = _meta(folder)
    assert meta["recording"]["xdf_files"] == [
        f"{folder.name}.xdf", f"{folder.name}_part002.xdf", f"{folder.name}_part003.xdf"
    ]  # fmt: skip
    assert [e["sha256"] for e in meta["recording"]["imported"]] == [
        _sha(p) for p in paths
    ]
    whole = load_session(folder)
    direct = load_session(paths[0])
    assert direct.files == [str(p) for p in paths]
    for a, b in zip(whole.streams, direct.streams, strict=True):
        assert np.array_equal(a.time_stamps, b.time_stamps)
    counts = {s["name"]: s["sample_count"] for s in meta["recording"]["streams"]}
    assert counts == {s.name: len(s.time_stamps) for s in whole.streams}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"PK\x03\x04zip", "not an XDF file"),
     (b"XDF:\x07garbage" * 4, "not a readable XDF file")],
    ids=["missing", "not-xdf", "corrupt"],
)  # fmt: skip
def test_import_bad_input_clear_error_and_no_session(tmp_path, content, message):
    src = tmp_path / "in.xdf"
    if content is not None:
        src.write_bytes(content)
    proc = _cli("import", str(src), "--root", str(tmp_path / "rec"), check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    (error,) = [x for x in proc.stderr.splitlines() if x.startswith("Error:")]
    assert message in error  # one line
    assert not (tmp_path / "rec").exists() or not any(
        p for p in (tmp_path / "rec").iterdir() if not p.name.startswith(".")
    )
    with pytest.raises(XdfImportError):
        import_xdf(src, tmp_path / "rec2")


def test_process_and_export_an_xdf_file(tmp_path):
    src = tmp_path / "clock_resets.xdf"
    shutil.copy2(DATA / "clock_resets.xdf", src)
    root = tmp_path / "rec"
    proc = _cli("process", str(src), "--root", str(root), "--no-hand-segmentation")
    folder = Path(proc.stdout.strip().splitlines()[-1])
    assert folder.parent == root
    assert (folder / "processing/synchronized_data/BioSemi.parquet").exists()
    assert (folder / "exports/matlab" / f"{folder.name}.mat").exists()
    proc = _cli(
        "export", str(src), "--root", str(root), "--mat", "--mat-version", "7.3"
    )
    assert Path(proc.stdout.strip().splitlines()[-1]) == folder  # reused
    mat = folder / "exports/matlab" / f"{folder.name}.mat"
    with h5py.File(mat, "r") as h5:
        assert h5["BioSemi"]["time_series"].shape == (27815, 8)  # HDF5 dims reversed
    assert mat.read_bytes()[:10] == b"MATLAB 7.3"
    runs = _meta(folder)["processing"]["runs"]
    assert runs[-1]["steps"]["matlab"]["report"]["format"] == "v7.3"


def test_meas_date_is_the_recordings(tmp_path):
    src = DATA / "empty_streams.xdf"
    header = pyxdf.load_xdf(str(src))[1]
    when = dt.datetime.strptime(header["info"]["datetime"][0], "%Y-%m-%dT%H:%M:%S%z")
    for data in (load_session(src), load_session(import_xdf(src, tmp_path))):
        raw = data.to_mne()
        assert data.start_wall == when
        # every annotation sits at its wall-clock time: FileHeader datetime + offset
        markers = [a for a in raw.annotations if a["description"] != "BAD_ACQ_SKIP"]
        assert len(markers) == len(data.events) == 1
        onset = raw.info["meas_date"] + dt.timedelta(seconds=markers[0]["onset"])
        expected = when + dt.timedelta(seconds=data.events["onset"][0])
        assert abs((onset - expected).total_seconds()) < 1e-3


def test_info_duration_across_clock_reset_matches_pyxdf():
    proc = _cli("info", str(DATA / "clock_resets.xdf"), "--json")
    info = json.loads(proc.stdout)
    streams, _ = pyxdf.load_xdf(str(DATA / "clock_resets.xdf"))
    ref = {
        s["info"]["name"][0]: s["time_stamps"][-1] - s["time_stamps"][0]
        for s in streams
    }
    for s in info["streams"]:
        assert abs(s["duration"] - ref[s["name"]]) < 0.5, s


# ------------------------------------------------------------ LabRecorder
@pytest.mark.filterwarnings("ignore:Montage name:FutureWarning")  # renamed in mne 1.13
def test_labrecorder_recording_processes_to_mne(tmp_path, uid):
    labels = ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]
    info = pylsl.StreamInfo(
        f"EEG_{uid}", "EEG", len(labels), 250, pylsl.cf_float32, f"eeg_{uid}"
    )
    chans = info.desc().append_child("channels")
    for label in labels:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "EEG")
    eeg = pylsl.StreamOutlet(info)
    minfo = pylsl.StreamInfo(f"Mk_{uid}", "Markers", 1, 0, pylsl.cf_string, f"mk_{uid}")
    markers = pylsl.StreamOutlet(minfo)
    out = tmp_path / "sub-01_task-rest_eeg.xdf"
    started = dt.datetime.now().astimezone()
    child = start_labrecorder(out, 3, f"eeg_{uid}", f"mk_{uid}")
    assert eeg.wait_for_consumers(15) and markers.wait_for_consumers(15)
    pushed, t_start, k = 0, pylsl.local_clock(), 0
    while child.poll() is None:
        n = int((pylsl.local_clock() - t_start) * 250) - pushed
        if n > 0:
            idx = np.arange(pushed, pushed + n)
            eeg.push_chunk(
                (np.sin(idx[:, None] / 25.0) * 20).repeat(6, 1).astype(np.float32)
            )
            pushed += n
        if pushed // 125 > k:
            k = pushed // 125
            markers.push_sample([f"stim {k % 2}"])
        time.sleep(0.02)
    assert child.returncode == 0, child.stderr.read()
    root = tmp_path / "rec"
    proc = _cli("process", str(out), "--root", str(root), "--no-hand-segmentation")
    folder = Path(proc.stdout.strip().splitlines()[-1])
    meta = _meta(folder)
    ref, _ = pyxdf.load_xdf(str(out))
    counts = {s["name"]: s["sample_count"] for s in meta["recording"]["streams"]}
    assert counts == {r["info"]["name"][0]: len(r["time_stamps"]) for r in ref}
    assert counts[f"EEG_{uid}"] > 250
    data = load_session(folder)
    raw = data.to_mne(streams=[f"EEG_{uid}"])
    assert abs((raw.info["meas_date"] - started).total_seconds()) < 5
    assert raw.ch_names == labels  # unique bare labels
    raw.set_montage("standard_1020")
    assert set(raw.annotations.description) >= {"stim 0", "stim 1"}


def test_truncated_file_counts_from_samples(tmp_path):
    src = tmp_path / "cut.xdf"
    data = (DATA / "clock_resets.xdf").read_bytes()
    src.write_bytes(data[: int(len(data) * 0.6)])  # a crash: no footers, torn tail
    folder = import_xdf(src, tmp_path / "rec")
    counts = {
        s["name"]: s["sample_count"] for s in _meta(folder)["recording"]["streams"]
    }
    loaded = load_session(folder)
    assert counts == {s.name: len(s.time_stamps) for s in loaded.streams}
    assert 0 < counts["BioSemi"] < 27815


def test_a_sessions_own_xdf_resolves_to_that_session(tmp_path):
    from test_processing_support import make_session

    from lsl_session.importer import session_for

    folder, _, _ = make_session(tmp_path / "rec", name="own", parts=2)
    for name in (f"{folder.name}.xdf", f"{folder.name}_part002.xdf"):
        assert session_for(folder / name, tmp_path / "other") == folder
    assert not (tmp_path / "other").exists()
    direct, whole = load_session(folder / f"{folder.name}.xdf"), load_session(folder)
    assert direct.root == folder and direct.t0 == whole.t0
    assert direct.start_wall == whole.start_wall
    # a copy outside the session is a foreign file: imported
    outside = tmp_path / "copy.xdf"
    shutil.copy2(folder / f"{folder.name}.xdf", outside)
    assert session_for(outside, tmp_path / "other").parent == tmp_path / "other"


def test_same_name_streams_get_distinct_files(tmp_path):
    from test_processing_support import stream_xml

    from lsl_session.xdf import XdfWriter

    src = tmp_path / "twins.xdf"
    t = 10.0 + np.arange(100) / 100
    with XdfWriter(src) as w:
        for sid, source in ((1, "amp_left"), (2, "amp_right")):
            xml = stream_xml(
                "x0", "EEG", "float32", [("Cz", "uV", "EEG")], 100, source_id=source
            )
            w.write_stream_header(sid, xml)
            w.write_samples(sid, t, np.full((100, 1), sid, np.float32))
        w.write_stream_footers()
    from lsl_session.processing.pipeline import process_session
    from lsl_session.session import Session

    folder = import_xdf(src, tmp_path / "rec")
    run = process_session(Session(folder), hand_segmentation=False, processors=[])
    assert run["status"] == "ok", run["errors"]
    sync = folder / "processing/synchronized_data"
    assert {p.name for p in sync.glob("x0*.parquet")} == {
        "x0_amp_left.parquet", "x0_amp_right.parquet"
    }  # fmt: skip
    assert {p.name for p in (folder / "exports/csv").glob("x0*.csv")} == {
        "x0_amp_left.csv", "x0_amp_right.csv"
    }  # fmt: skip
    raw = load_session(folder).to_mne()
    assert raw.ch_names == ["x0@amp_left/Cz", "x0@amp_right/Cz"]
    assert np.nanmax(raw.get_data(picks=["x0@amp_right/Cz"])) == pytest.approx(2e-6)
