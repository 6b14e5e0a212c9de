"""The main job end to end: ``lsl-session demo`` and the notebook on its session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = (
    Path(__file__).resolve().parents[1] / "notebooks" / "explore_demo_session.ipynb"
)


def _run_demo(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "demo", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    return proc, folder


def _check_demo(proc, folder: Path, phones: int) -> None:
    assert folder.is_dir()
    out = proc.stdout
    for heading in ("Session tree", "Streams", "Sync check", "Exports"):
        assert heading in out
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "completed"
    names = {s["name"] for s in meta["recording"]["streams"]}
    for i in range(1, phones + 1):
        assert {f"phone_{i}_gsr", f"phone_{i}_motion", f"phone_{i}_rgb_frames"} <= names
        files = meta["files"][f"phone_{i}"]
        assert {f["file_type"] for f in files} == {"rgb", "thermal"}
    assert {"shimmer_1", "webcam_1_frames", "StimulusMarkers"} <= names
    assert all(s["sample_count"] > 0 for s in meta["recording"]["streams"])
    report = json.loads((folder / "processing/sync_check/sync_check.json").read_text())
    rows = report["streams"]
    devices = {r["device"] for r in rows}
    assert {f"phone_{i}" for i in range(1, phones + 1)} <= devices
    for row in rows:
        assert row["n_matched"] == row["n_reference"] > 0, row
        assert row["within_one_sample"], row
    assert any((folder / "exports" / "csv").iterdir())
    assert any((folder / "exports" / "matlab").iterdir())
    # one verdict line a user can trust, then the folder as the last line
    report_path = folder / "processing" / "report.html"
    assert report_path.is_file()
    verdict = (
        f"{len(names)} streams, 0 samples lost, {len(rows)}/{len(rows)} sync-checked"
        f" streams aligned within one sample period, report: {report_path}"
    )
    lines = out.strip().splitlines()
    assert verdict in lines, out
    assert lines[-1] == str(folder)


@pytest.fixture(scope="module")
def demo_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return _run_demo(root)


def test_demo_default(demo_session):
    proc, folder = demo_session
    _check_demo(proc, folder, phones=2)


def test_notebook_runs_on_the_demo_session(demo_session):
    import nbformat
    from nbclient import NotebookClient

    _, folder = demo_session
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    os.environ["LSL_SESSION_DIR"] = str(folder)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        os.environ.pop("LSL_SESSION_DIR", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    # its figures are in the notebook: the signals and the sync-check errors
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert not [o for o in outputs if o.get("output_type") == "error"]


@pytest.mark.slow
def test_demo_60s_four_phones(tmp_path):
    proc, folder = _run_demo(tmp_path, "--duration", "60", "--phones", "4")
    _check_demo(proc, folder, phones=4)


def test_demo_sigint_stops_early_and_cleanly(tmp_path):
    import signal
    import time

    import pyxdf

    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "demo", "--root", str(tmp_path),
         "--duration", "120", "--phones", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = ""
    while proc.poll() is None and "devices up" not in line:
        line = proc.stderr.readline()
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGINT: stopped early" in err
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "completed" and "owner" not in meta
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    assert all(s["footer"] for s in streams)


def test_record_config_simulate_is_the_demo(demo_session, tmp_path):
    """`record --config configs/demo.toml --simulate` runs the demo's code path."""
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(tmp_path),
         "--config", str(config), "--simulate", "--duration", "7"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(proc.stdout.strip().splitlines()[-1])
    _check_demo(proc, folder, phones=2)
    _, demo_folder = demo_session

    def shape(folder: Path) -> tuple:
        meta = json.loads((folder / "session_metadata.json").read_text())
        report = json.loads(
            (folder / "processing/sync_check/sync_check.json").read_text()
        )
        streams = sorted(s["name"].removeprefix(folder.name) for s in
                         meta["recording"]["streams"])  # fmt: skip
        table = sorted((r["stream"], r["kind"], r["within_one_sample"])
                       for r in report["streams"])  # fmt: skip
        files = {d: sorted(f["file_type"] for f in fs)
                 for d, fs in meta["files"].items()}  # fmt: skip
        return streams, table, files, sorted(meta["devices"])

    assert shape(folder) == shape(demo_folder)


def test_demo_session_exports_a_valid_bids_dataset(demo_session, tmp_path):
    import csv
    import gzip

    sys.path.insert(0, str(Path(__file__).parent / "lsl_session"))
    from bids_support import errors, validate

    _, folder = demo_session
    ds = tmp_path / "bids"
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "export", str(folder), "--bids", str(ds)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = validate(ds)
    assert errors(report) == []
    ses = next((ds / "sub-demo").glob("ses-*"))
    physio = sorted(
        p.name.split("recording-")[1] for p in ses.glob("beh/*_physio.json")
    )
    assert physio == [
        "phone1gsr_physio.json",
        "phone2gsr_physio.json",
        "shimmer1_physio.json",
    ]
    tracksys = sorted(p.name for p in ses.glob("motion/*_motion.tsv"))
    assert [t.split("tracksys-")[1] for t in tracksys] == [
        "phone1motion_motion.tsv", "phone2motion_motion.tsv", "shimmer1_motion.tsv"]  # fmt: skip
    with open(next(ses.glob("beh/*_events.tsv")), newline="") as fh:
        events = list(csv.DictReader(fh, delimiter="\t"))
    assert any(e["stream"] == "StimulusMarkers" for e in events)
    with gzip.open(next(ses.glob("beh/*recording-shimmer1_physio.tsv.gz")), "rt") as fh:
        assert len(fh.readline().split("\t")) == 3  # conductance, resistance, PPG
    assert (
        ds / "sourcedata/sub-demo" / ses.name / folder.name / f"{folder.name}.xdf"
    ).is_file()
