"""Pipeline outputs: Parquet, aligned grid, events, sync report, CSV, MAT, re-runs."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.io
from test_processing_support import SINE_HZ, T0, make_session

from lsl_session.processing import load_session, to_matlab
from lsl_session.processing.pipeline import process_session
from lsl_session.session import Session


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    folder, _specs, true = make_session(root, reset=True, parts=2)
    session = Session(folder)
    run = process_session(session, hand_segmentation=False)
    return folder, run, true


def test_run_recorded(processed):
    folder, run, _ = processed
    assert run["status"] == "ok", run["errors"]
    for step in ("load", "synchronized_data", "csv", "matlab", "sync_check"):
        assert run["steps"][step]["status"] == "ok"
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["processing"]["runs"][-1]["started"] == run["started"]
    log = json.loads((folder / f"{folder.name}_log.json").read_text())
    kinds = [e["event"] for e in log]
    assert kinds[-2:] == ["processing_start", "processing_end"]


def test_stream_parquet(processed):
    folder, _, _ = processed
    sync = folder / "processing" / "synchronized_data"
    table = pq.read_table(sync / "gsr_a.parquet")
    assert table.column_names == ["time", "lsl_time", "GSR", "PPG"]
    assert table.schema.field("GSR").metadata[b"unit"] == b"uS"
    assert table.schema.field("time").metadata[b"unit"] == b"s"
    meta = json.loads(table.schema.metadata[b"lsl_session"])
    assert meta["nominal_srate"] == 100
    assert meta["type"] == "GSR"
    frame = table.to_pandas()
    data = load_session(folder)
    gsr = data.stream("gsr_a")
    assert np.array_equal(frame["lsl_time"], gsr.time_stamps)
    assert np.allclose(frame["time"], gsr.time_stamps - T0)
    assert frame["GSR"].dtype == np.float32
    assert len(frame) == 600


def test_aligned_sine_lines_up(processed):
    folder, _, _ = processed
    sync = folder / "processing" / "synchronized_data"
    aligned = pd.read_parquet(sync / "aligned_250Hz.parquet")
    period = 1 / 250.0
    assert np.allclose(np.diff(aligned["time"]), period)
    a = aligned["gsr_a/PPG"].to_numpy() / 100.0
    b = aligned["sine_b/sine"].to_numpy()
    both = ~np.isnan(a) & ~np.isnan(b)
    assert both.sum() > 1000
    # same sine through two clocks: within one grid period of shift
    bound = 2 * np.pi * SINE_HZ * period
    assert np.max(np.abs(a[both] - b[both])) < bound
    truth = np.sin(2 * np.pi * SINE_HZ * (aligned["lsl_time"].to_numpy() - T0))
    assert np.max(np.abs(b[both] - truth[both])) < bound
    # NaN outside a stream's span
    assert np.isnan(a[0]) or np.isnan(b[0]) or aligned["time"].iloc[0] >= 0


def test_aligned_nan_across_gaps(tmp_path):
    from lsl_session.processing import tables
    from lsl_session.processing.model import SyncedStream

    ts = np.r_[np.arange(100) / 100.0, 2 + np.arange(100) / 100.0]
    s = SyncedStream(1, "g", "T", "g", "float32", 1, 100.0, 100.0, ts,
                     np.ones((200, 1), np.float32), ["x"], [""], [""],
                     segments=[(0, 199)])  # fmt: skip
    frame = tables.aligned_frame([s], 0.0, 100.0)
    gap = (frame["time"] > 0.995) & (frame["time"] < 1.995)
    assert frame.loc[gap, "g/x"].isna().all()
    assert frame.loc[~gap, "g/x"].notna().all()


def test_events_and_report(processed):
    folder, _, true = processed
    sync = folder / "processing" / "synchronized_data"
    events = pd.read_parquet(sync / "events.parquet")
    assert list(events.columns[:5]) == [
        "onset",
        "lsl_time",
        "duration",
        "description",
        "stream",
    ]
    assert events["description"].tolist() == [
        "marker/block_1", "m0", "m1", "m2", "stimulus_play", "m3"]  # fmt: skip
    stim = events[events["stream"] == "stim"]
    assert np.allclose(stim["lsl_time"], true[2], atol=2e-4)
    assert np.allclose(events["onset"], events["lsl_time"] - T0)
    report = json.loads((sync / "sync_report.json").read_text())
    by = {s["name"]: s for s in report["streams"]}
    assert by["sine_b"]["offset_fit"]["clock_resets"] == 1
    assert len(by["sine_b"]["offset_fit"]["ranges"]) == 2
    assert by["gsr_a"]["effective_srate"] == pytest.approx(100, rel=1e-3)
    assert by["gsr_a"]["sample_count"] == 600
    assert by["gsr_a"]["offset_fit"]["residual_abs_max_s"] < 1e-3
    assert report["aligned"]["rate"] == 250


def test_csv_has_units(processed):
    folder, _, _ = processed
    csv = folder / "exports" / "csv"
    head = (csv / "gsr_a.csv").read_text().splitlines()[0]
    assert head == "time [s],lsl_time [s],GSR [uS],PPG [mV]"  # quoted only if needed
    frame = pd.read_csv(csv / "gsr_a.csv")
    assert len(frame) == 600
    events = pd.read_csv(csv / "events.csv")
    assert "onset [s]" in events.columns
    assert len(events) == 6


def test_mat_v5(processed):
    folder, _, _ = processed
    mat = scipy.io.loadmat(folder / "exports" / "matlab" / f"{folder.name}.mat",
                           simplify_cells=True)  # fmt: skip
    gsr = mat["gsr_a"]
    assert gsr["time_series"].shape == (2, 600)  # channels × samples
    assert gsr["time_stamps"].shape == (600,)
    assert list(gsr["info"]["channel_units"]) == ["uS", "mV"]
    assert gsr["info"]["nominal_srate"] == 100
    assert list(mat["stim"]["time_series"]) == ["m0", "m1", "m2", "m3"]
    assert len(mat["events"]["onset"]) == 6
    assert mat["session"]["session_id"] == folder.name


def test_mat_v73_switch(tmp_path):
    data = load_session(make_session(tmp_path, name="v73")[0])
    path = tmp_path / "x.mat"
    info = to_matlab.write_matlab(data.streams, path, t0=data.t0, events=data.events,
                                  session_id="x", threshold=1000)  # fmt: skip
    assert info["format"] == "v7.3"
    head = path.read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file")
    assert head[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as h5:
        gsr = h5["gsr_a"]
        assert gsr.attrs["MATLAB_class"] == b"struct"
        ts = gsr["time_series"]
        assert ts.attrs["MATLAB_class"] == b"single"
        assert ts.shape == (600, 2)  # HDF5 dims reversed: MATLAB sees 2 × 600
        assert np.array_equal(ts[:], data.stream("gsr_a").time_series)
        label = h5[gsr["info"]["channel_labels"][0, 0]]
        assert label.attrs["MATLAB_class"] == b"char"
        assert bytes(label[:].ravel().astype("u1")).decode() == "GSR"
        marker = h5[h5["stim"]["time_series"][0, 0]]
        assert bytes(marker[:].ravel().astype("u1")).decode() == "m0"
    assert (
        to_matlab.write_matlab(
            data.streams,
            tmp_path / "y.mat",
            t0=data.t0,
            events=data.events,
            session_id="x",
        )["format"]
        == "v5"
    )


def test_rerun_replaces_outputs(tmp_path):
    folder, _, _ = make_session(tmp_path, name="rerun")
    session = Session(folder)
    process_session(session, hand_segmentation=False)
    sync = folder / "processing" / "synchronized_data"
    stale = sync / "stale.parquet"
    stale.write_bytes(b"old")
    before = (sync / "gsr_a.parquet").stat().st_ino
    run = process_session(session, rate=50, hand_segmentation=False)
    assert run["status"] == "ok"
    assert not stale.exists()
    assert (sync / "aligned_50Hz.parquet").exists()
    assert not (sync / "aligned_250Hz.parquet").exists()
    assert (sync / "gsr_a.parquet").stat().st_ino != before
    assert not list((folder / "processing").glob(".*"))  # no staging left over
    runs = session.metadata()["processing"]["runs"]
    assert len(runs) == 2
    assert runs[-1]["options"]["rate"] == 50
    log = json.loads((folder / f"{folder.name}_log.json").read_text())
    assert [e["event"] for e in log].count("processing_end") == 2
