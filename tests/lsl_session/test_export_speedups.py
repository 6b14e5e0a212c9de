"""The fast CSV and MAT writers produce exactly the bytes of the plain ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.io

from lsl_session.processing import to_csv, to_matlab
from lsl_session.processing.model import SyncedStream


def _stream(n: int, dtype: str, nch: int = 3) -> SyncedStream:
    rng = np.random.default_rng(7)
    ts = 500.0 + np.arange(n) / 250.0 + rng.normal(0, 1e-6, n)
    if dtype == "string":
        series = [[str(v) for v in rng.choice(["=1+1", "a,b", 'q"x', "ü", "-3"], nch)]
                  for _ in range(n)]  # fmt: skip
        fmt = "string"
    else:
        series = rng.normal(0, 1e3, (n, nch)).astype(dtype)
        if series.dtype.kind == "f":
            series[::37, 0] = np.nan
        fmt = {"float32": "float32", "float64": "double64", "int32": "int32"}[dtype]
    return SyncedStream(
        1, "s", "EEG", "sid", fmt, nch, 250.0, 250.0, ts, series,
        [f"c{k}" for k in range(nch)], ["uV"] * nch, ["EEG"] * nch,
    )  # fmt: skip


def _reference_csv(stream: SyncedStream, t0: float) -> bytes:
    """The whole stream formatted by pyarrow in one go (one block, one thread)."""
    labels = [f"c{k}" for k in range(stream.channel_count)]
    header = ["time [s]", "lsl_time [s]"] + [
        to_csv.neutralise(to_csv.with_unit(lbl, u))
        for lbl, u in zip(labels, stream.channel_units, strict=True)
    ]
    table = to_csv._block_table(stream, 0, len(stream.time_stamps), t0, header)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False))
    return to_csv.header_line(header) + sink.getvalue().to_pybytes()


def test_parallel_csv_blocks_are_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(to_csv, "CSV_BLOCK_ROWS", 1000)  # many blocks in flight
    monkeypatch.setattr(to_csv, "CSV_WORKERS", 3)
    for dtype in ("float32", "float64", "int32", "string"):
        stream = _stream(10_500, dtype)
        path = tmp_path / f"{dtype}.csv"
        assert to_csv.write_stream_csv(stream, path, 500.0) == 10_500
        assert path.read_bytes() == _reference_csv(stream, 500.0), dtype


def test_empty_stream_csv_is_the_header(tmp_path):
    path = tmp_path / "e.csv"
    to_csv.write_stream_csv(_stream(0, "float32"), path, 0.0)
    assert path.read_bytes() == b"time [s],lsl_time [s],c0 [uV],c1 [uV],c2 [uV]\n"


def test_mat_v5_without_copy_equals_savemat(tmp_path):
    """Numeric arrays written from their own memory: the same file as savemat."""
    series = np.asfortranarray(np.arange(12_000, dtype=np.float32).reshape(4, -1))
    variables = {
        "eeg": {
            "time_series": series,  # F-contiguous: written without a copy
            "time_stamps": np.linspace(0, 1, 3000).reshape(1, -1),
            "strided": np.arange(20, dtype=np.int16)[::2],  # not contiguous
            "info": {"name": "eeg", "srate": 250.0},
        }
    }
    ours, theirs = tmp_path / "ours.mat", tmp_path / "scipy.mat"
    to_matlab.write_v5(ours, variables)
    scipy.io.savemat(theirs, variables, long_field_names=True, oned_as="row")
    # the 116-byte text header holds the creation time
    assert ours.read_bytes()[116:] == theirs.read_bytes()[116:]
    back = scipy.io.loadmat(ours)["eeg"][0, 0]
    np.testing.assert_array_equal(back["time_series"], series)
