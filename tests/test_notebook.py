"""The analysis notebook on any session: the newest under the root, an EEG one, a foreign one.

(The demo session's run is in ``test_demo.py``.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from lsl_session.importer import import_xdf
from lsl_session.xdf import XdfWriter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore_demo_session.ipynb"
DATA = ROOT / "tests" / "data" / "xdf"


def _xml(name, stype, fmt, labels, srate, sid, unit="microvolts"):
    chans = "".join(
        f"<channel><label>{lbl}</label><unit>{unit}</unit><type>{stype}</type></channel>"
        for lbl in labels
    )
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>{stype}</type>'
        f"<channel_count>{len(labels)}</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>{fmt}</channel_format><source_id>{sid}</source_id>"
        f"<desc><channels>{chans}</channels></desc></info>"
    )


def eeg_recording(path: Path, when: dt.datetime) -> Path:
    """A LabRecorder-like EEG file: 10-20 labels, a 3-s drop-out, two marker streams."""
    labels = ["Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2"]
    t = 500.0 + np.arange(20 * 250) / 250
    t = t[(t < 508.0) | (t >= 511.0)]
    rng = np.random.default_rng(3)
    alpha = 15 * np.sin(2 * np.pi * 10 * t)[:, None]
    x = (alpha + rng.normal(0, 5, (len(t), len(labels)))).astype(np.float32)
    header = {"datetime": when.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with XdfWriter(path, header=header) as w:
        w.write_stream_header(1, _xml("BioSemi", "EEG", "float32", labels, 250, "bs1"))
        w.write_stream_header(
            2, _xml("PsychoPy", "Markers", "string", ["m"], 0, "pp", "")
        )
        w.write_stream_header(
            3, _xml("Buttons", "Markers", "string", ["m"], 0, "bb", "")
        )
        for k in range(0, len(t), 125):
            w.write_samples(1, t[k : k + 125], x[k : k + 125])
        w.write_samples(2, np.array([502.0, 505.0, 513.0]), [["go"], ["stop"], ["go"]])
        w.write_samples(3, np.array([502.4, 513.5]), [["go"], ["go"]])
        for sid in (1, 2, 3):
            w.write_clock_offset(sid, 500.0, 0.0)
            w.write_clock_offset(sid, 520.0, 0.0)
        w.write_stream_footers()
    return path


def _run(monkeypatch, **env) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    monkeypatch.delenv("LSL_SESSION_DIR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    return nb


def _text(nb) -> str:
    return "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )  # fmt: skip


def _figures(nb) -> int:
    return sum(
        "image/png" in o.get("data", {})
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("nb")
    root = base / "recordings"
    import_xdf(DATA / "empty_streams.xdf", root)  # 2025-01-31: the older one
    when = dt.datetime.now().astimezone().replace(microsecond=0)
    eeg = import_xdf(eeg_recording(base / "sub-01_task-rest_eeg.xdf", when), root)
    return root, eeg


def test_notebook_on_the_newest_session_an_eeg_recording(root, monkeypatch):
    root, eeg = root
    nb = _run(monkeypatch, LSL_SESSION_ROOT=root)
    text = _text(nb)
    assert f"session: {eeg.name}" in text
    assert "'eeg': 10" in text
    assert "1 BAD_ACQ_SKIP spans, 3.00 s" in text
    # two marker streams share "go": the annotations carry the stream names
    assert "Buttons/go" in text
    assert "no sync-check report" in text
    assert _figures(nb) >= 2  # signals, EEG spectrum


def test_notebook_on_a_foreign_session_without_eeg(root, monkeypatch):
    root, _ = root
    (older,) = [p for p in root.iterdir() if p.name.startswith("empty_streams_")]
    nb = _run(monkeypatch, LSL_SESSION_DIR=older)
    text = _text(nb)
    assert f"session: {older.name}" in text
    assert "no EEG channel in this session" in text
    assert _figures(nb) >= 1
