"""Files every reader opens: GNU Octave on our v5 MAT and CSV, Parquet key-value units."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pytest
from system_tools import missing

from lsl_session.processing import tables
from lsl_session.processing.model import SyncedStream
from lsl_session.processing.to_csv import write_csv
from lsl_session.processing.to_matlab import write_matlab
from lsl_session.processing.to_parquet import write_synchronized

OCTAVE = shutil.which("octave-cli") or shutil.which("octave")


@pytest.fixture
def octave() -> str:
    """GNU Octave's CLI, or not run (locally) / failed (CI)."""
    if OCTAVE is None:
        missing("GNU Octave", "apt-get install -y octave")
    return OCTAVE


TEXT = "Blöck é – 日本 😀"


def _streams() -> list[SyncedStream]:
    ts = 10.0 + np.arange(50) / 10.0
    gsr = SyncedStream(
        stream_id=1, name="Hautleitfähigkeit", type="GSR", source_id="s1",
        channel_format="float32", channel_count=2, nominal_srate=10.0,
        effective_srate=10.0, time_stamps=ts,
        time_series=np.column_stack([np.full(50, 5.0), np.arange(50.0)]).astype(np.float32),
        channel_labels=["Température", "GSR"], channel_units=["°C", "µS"],
        channel_types=["Temp", "GSR"], segments=[(0, 49)],
    )  # fmt: skip
    marks = SyncedStream(
        stream_id=2, name="stim", type="Markers", source_id="s2",
        channel_format="string", channel_count=1, nominal_srate=0.0,
        effective_srate=0.0, time_stamps=np.array([11.0, 12.0]),
        time_series=[[TEXT], ["plain"]], channel_labels=["marker"],
        channel_units=[""], channel_types=["Markers"],
    )  # fmt: skip
    return [gsr, marks]


def _octave(script: str, cwd) -> str:
    proc = subprocess.run(
        [OCTAVE, "--no-gui", "--norc", "--quiet", "--eval", script],
        cwd=cwd, capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    return (cwd / "out.txt").read_text(encoding="utf-8")


def _mat(tmp_path, version="5"):
    streams = _streams()
    events = tables.events_frame(streams, 10.0)
    path = tmp_path / "s.mat"
    write_matlab(streams, path, t0=10.0, events=events, session_id="s", version=version)
    return path


def test_v5_text_is_utf16_code_units_as_matlab_writes_it(tmp_path):
    data = _mat(tmp_path).read_bytes()
    # MATLAB's layout, which Octave decodes: UTF-16LE code units (miUINT16)
    assert TEXT.encode("utf-16-le") in data
    assert "µS".encode("utf-16-le") in data
    # not scipy's miUTF8 bytes under a character count (Octave truncates those)
    assert TEXT.encode("utf-8") not in data
    assert b"plain" in data  # ASCII text keeps scipy's 1-byte encoding


@pytest.mark.usefixtures("octave")
def test_octave_loads_non_ascii_strings_intact(tmp_path):
    _mat(tmp_path)
    out = _octave(
        "load('s.mat'); f = fopen('out.txt', 'w');"
        " fprintf(f, '%s\\n', stim.time_series{1}, stim.time_series{2},"
        " Hautleitf_higkeit.info.name, Hautleitf_higkeit.info.channel_labels{1},"
        " Hautleitf_higkeit.info.channel_units{2}, events.description{1});"
        " fprintf(f, '%g\\n', size(Hautleitf_higkeit.time_series));"
        " fclose(f);",
        tmp_path,
    )
    assert out.splitlines() == [
        TEXT, "plain", "Hautleitfähigkeit", "Température", "µS", TEXT, "2", "50"
    ]  # fmt: skip


@pytest.mark.usefixtures("octave")
def test_octave_importdata_csv_headers_without_quotes(tmp_path):
    streams = _streams()
    write_csv(streams, tmp_path, t0=10.0, events=tables.events_frame(streams, 10.0))
    head = (tmp_path / "Hautleitf_higkeit.csv").read_text(encoding="utf-8")
    assert head.splitlines()[0] == "time [s],lsl_time [s],Température [°C],GSR [µS]"
    out = _octave(
        "d = importdata('Hautleitf_higkeit.csv', ',', 1); f = fopen('out.txt', 'w');"
        " fprintf(f, '%s\\n', d.colheaders{:}); fprintf(f, '%g\\n', size(d.data));"
        " fclose(f);",
        tmp_path,
    )
    assert out.splitlines() == [
        "time [s]", "lsl_time [s]", "Température [°C]", "GSR [µS]", "50", "4"
    ]  # fmt: skip


def test_parquet_units_are_plain_key_value_metadata(tmp_path):
    streams = _streams()
    events = tables.events_frame(streams, 10.0)
    report = write_synchronized(streams, tmp_path, t0=10.0, rate=10.0, events=events)
    aligned = tmp_path / report["aligned"]["file"]
    # the footer's key-value pairs, as DuckDB's parquet_kv_metadata() lists them
    kv = pq.ParquetFile(aligned).metadata.metadata
    units = json.loads(kv[b"units"].decode("utf-8"))
    assert units == {
        "time": "s", "lsl_time": "s",
        "Hautleitfähigkeit/Température": "°C", "Hautleitfähigkeit/GSR": "µS",
    }  # fmt: skip
    per_stream = pq.ParquetFile(
        tmp_path / "Hautleitf_higkeit.parquet"
    ).metadata.metadata
    assert json.loads(per_stream[b"units"])["GSR"] == "µS"


def test_v5_ascii_only_file_is_scipys_byte_for_byte(tmp_path):
    import scipy.io

    from lsl_session.processing.to_matlab import write_v5

    variables = {
        "s": {"name": "gsr", "n": np.arange(3.0),
              "labels": np.array(["GSR", "PPG"], dtype=object).reshape(1, 2)},
        "events": {"description": np.array(["go", "stop"], dtype=object).reshape(2, 1)},
    }  # fmt: skip
    write_v5(tmp_path / "ours.mat", variables)
    scipy.io.savemat(
        tmp_path / "scipy.mat", variables, long_field_names=True, oned_as="row"
    )
    ours, theirs = (
        (tmp_path / "ours.mat").read_bytes(),
        (tmp_path / "scipy.mat").read_bytes(),
    )
    assert ours[128:] == theirs[128:]  # the 128-byte header holds the creation time
