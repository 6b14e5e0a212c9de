"""Writer: exact bytes, round trips through pyxdf and our reader."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import pyxdf
from xdf_helpers import FIXTURES, stream_xml

from lsl_session.xdf import (
    XdfWriter,
    encode_boundary,
    encode_clock_offset,
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
    iter_chunks,
    iter_sample_chunks,
    load_raw,
)
from lsl_session.xdf._format import ChunkTag, decode_varlen, encode_varlen

NUMERIC = ["int8", "int16", "int32", "int64", "float32", "double64"]
NP = {"int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
      "float32": "f4", "double64": "f8"}  # fmt: skip


def pyxdf_load(data: bytes):
    return pyxdf.load_xdf(
        io.BytesIO(data), synchronize_clocks=False, dejitter_timestamps=False
    )


def extreme_values(fmt: str, n: int) -> np.ndarray:
    dt = np.dtype(NP[fmt])
    rng = np.random.default_rng(1)
    if dt.kind == "i":
        info = np.iinfo(dt)
        vals = rng.integers(info.min, info.max, (n, 5), dtype=dt, endpoint=True)
        vals[0] = [info.min, info.max, 0, -1, 1]
    else:
        info = np.finfo(dt)
        vals = rng.normal(scale=1e3, size=(n, 5)).astype(dt)
        vals[0] = [np.nan, np.inf, -np.inf, info.max, info.min]
        vals[1] = [info.tiny, -0.0, info.eps, info.smallest_subnormal, 1 / 3]
    return vals


@pytest.mark.parametrize("value", [0, 1, 255, 256, 2**32 - 1, 2**32, 2**64 - 1])
def test_varlen_round_trip(value):
    raw = encode_varlen(value)
    assert raw[0] == (1 if value < 256 else 4 if value < 2**32 else 8)
    assert decode_varlen(raw + b"junk") == (value, len(raw))


def test_varlen_rejects_out_of_range():
    with pytest.raises(ValueError, match="varlen"):
        encode_varlen(-1)
    with pytest.raises(ValueError, match="varlen"):
        encode_varlen(2**64)


def test_encoders_match_labrecorder_bytes():
    data = (FIXTURES / "minimal.xdf").read_bytes()
    chunks = list(iter_chunks(data))
    raw = {(c.tag, c.offset): data[c.offset : c.end] for c in chunks}
    assert raw[(ChunkTag.BOUNDARY, 605)] == encode_boundary()
    assert raw[(ChunkTag.CLOCK_OFFSET, 1238)] == encode_clock_offset(0, 6.1, -0.1)
    header = next(c for c in chunks if c.tag == ChunkTag.STREAM_HEADER)
    xml = data[header.content_offset + 4 : header.end].decode()
    assert raw[(ChunkTag.STREAM_HEADER, 64)] == encode_stream_header(0, xml)
    # LabRecorder writes NumSamples with width 4; values and stamp bytes are equal
    first = encode_samples(0, [5.1], np.array([[192, 255, 238]], "i2"), "int16")
    assert first[-15:] == raw[(ChunkTag.SAMPLES, 625)][-15:]


def test_file_header_fields():
    data = encode_file_header(
        {"writer": "x & <y>", "datetime": "2025-01-01T00:00:00+0000"}
    )
    assert data.startswith(b"XDF:")
    _, header = pyxdf_load(data)
    assert header["info"]["version"] == ["1.0"]
    assert header["info"]["writer"] == ["x & <y>"]
    assert header["info"]["datetime"] == ["2025-01-01T00:00:00+0000"]
    assert load_raw(data).header["writer"] == "x & <y>"
    default = load_raw(encode_file_header()).header
    assert default["version"] == "1.0"
    assert len(default["datetime"]) == 24
    with pytest.raises(ValueError, match="field name"):
        encode_file_header({"bad name": 1})


@pytest.mark.parametrize("fmt", NUMERIC)
def test_numeric_round_trip(fmt):
    values = extreme_values(fmt, 300)
    stamps = 1e5 + np.cumsum(np.random.default_rng(2).random(300))
    stamps[5] = 0.0  # an exact 0.0 stamp is written, not elided
    offsets = [(1e5 + 0.1, -1 / 3), (1e5 + 5.1, 1e-300)]
    buf = io.BytesIO()
    with XdfWriter(buf) as w:
        w.write_stream_header(7, stream_xml("s", fmt, 5))
        w.write_clock_offset(7, *offsets[0])
        w.write_samples(7, stamps[:100], values[:100])
        w.write_samples(7, stamps[100:], values[100:], max_bytes=1000)
        w.write_clock_offset(7, *offsets[1])
        w.write_stream_footers()
    data = buf.getvalue()
    assert sum(c.tag == ChunkTag.SAMPLES for c in iter_chunks(data)) > 2
    ours = load_raw(data)
    assert ours.problems == []
    assert ours._slow_chunks == 0
    ts = ours.streams[7]
    assert ts.time_series.dtype == np.dtype(NP[fmt]).newbyteorder("<")
    assert ts.time_series.tobytes() == values.tobytes()
    assert ts.time_stamps.tobytes() == stamps.tobytes()
    assert list(zip(ts.clock_times, ts.clock_values, strict=True)) == offsets
    assert ts.footer["clock_offsets"] == offsets
    assert ts.footer["first_timestamp"] == stamps[0]
    assert ts.footer["last_timestamp"] == stamps[-1]
    assert ts.footer["sample_count"] == 300
    streams, _ = pyxdf_load(data)
    (s,) = streams
    assert s["time_series"].tobytes() == values.tobytes()
    assert s["time_stamps"].tobytes() == stamps.tobytes()
    assert s["clock_times"] == [o[0] for o in offsets]
    assert s["clock_values"] == [o[1] for o in offsets]
    footer = s["footer"]["info"]
    assert float(footer["last_timestamp"][0]) == stamps[-1]
    assert footer["sample_count"] == ["300"]
    pairs = footer["clock_offsets"][0]["offset"]
    assert [(float(p["time"][0]), float(p["value"][0])) for p in pairs] == offsets


STRINGS = [
    ["", "plain"],
    ["é ü ß 漢字 🎉", "x" * 300],
    ["a" * 70000, ""],
    ["<xml>&amp;</xml>", "\x00nul"],
]


@pytest.mark.parametrize("n_samples", [0, 1, 4])
def test_string_round_trip(n_samples):
    values = STRINGS[:n_samples]
    stamps = np.arange(n_samples) * 0.25 + 3.0
    buf = io.BytesIO()
    with XdfWriter(buf) as w:
        w.write_stream_header(0xDEADBEEF, stream_xml("m", "string", 2, 0.0))
        w.write_samples(0xDEADBEEF, stamps, values)
        w.write_stream_footers()
    data = buf.getvalue()
    ours = load_raw(data)
    assert ours.problems == []
    s = ours.streams[0xDEADBEEF]
    assert s.time_series == values
    assert s.time_stamps.tobytes() == stamps.tobytes()
    assert s.footer["sample_count"] == n_samples
    (p,), _ = pyxdf_load(data)
    assert p["time_series"] == values
    assert p["time_stamps"].tobytes() == stamps.tobytes()
    assert p["info"]["stream_id"] == 0xDEADBEEF


def test_empty_samples_encode_to_nothing():
    assert encode_samples(1, [], np.zeros((0, 3), "f4"), "float32") == b""
    assert encode_samples(1, [], [], "string") == b""


def test_footer_xml_is_labrecorder_shaped():
    chunk = encode_stream_footer(2, 1.5, 2.5, 3, [(0.1, -0.2)])
    assert chunk[0] == 1  # Length < 256: [01 len][tag 2][id 4]
    xml = chunk[8:].decode()
    assert xml == (
        '<?xml version="1.0"?><info><first_timestamp>1.5</first_timestamp>'
        "<last_timestamp>2.5</last_timestamp><sample_count>3</sample_count>"
        "<clock_offsets><offset><time>0.1</time><value>-0.2</value></offset>"
        "</clock_offsets></info>"
    )
    empty = encode_stream_footer(2, None, None, 0)
    assert b"<first_timestamp>0</first_timestamp>" in empty


def test_chunk_length_width_grows_with_size():
    small = encode_samples(1, [1.0], [[""]], "string")
    assert small[0] == 1
    big = encode_samples(1, [1.0], [["x" * 300]], "string")
    assert big[0] == 4
    assert struct.unpack_from("<I", big, 1)[0] == len(big) - 5


def test_iter_sample_chunks_bounds_size():
    values = np.arange(3000, dtype="f8").reshape(1000, 3)
    chunks = list(iter_sample_chunks(1, np.arange(1000.0), values, "double64",
                                     max_bytes=4096))  # fmt: skip
    assert len(chunks) > 1
    assert all(len(c) <= 4096 for c in chunks)
    strings = [["y" * 100]] * 100
    chunks = list(iter_sample_chunks(1, np.arange(100.0), strings, "string",
                                     max_bytes=1000))  # fmt: skip
    assert len(chunks) > 5
    assert all(len(c) <= 1000 for c in chunks)


def test_input_validation():
    with pytest.raises(ValueError, match="stream_id"):
        encode_stream_header(-1, "<info/>")
    with pytest.raises(ValueError, match="stream_id"):
        encode_clock_offset(2**32, 0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        encode_samples(1, [1.0, 2.0], np.zeros((3, 2)), "double64")
    with pytest.raises(TypeError, match="cast"):
        encode_samples(1, [1.0], np.zeros((1, 2)), "int16")
    with pytest.raises(ValueError, match="channel_format"):
        encode_samples(1, [1.0], np.zeros((1, 2)), "float64")
    with pytest.raises(TypeError, match="sequences"):
        encode_samples(1, [1.0], ["abc"], "string")


def test_writer_file_lifecycle(tmp_path):
    path = tmp_path / "a.xdf"
    w = XdfWriter(path)
    w.write_stream_header(1, stream_xml("a", "int32", 1))
    with pytest.raises(ValueError, match="already"):
        w.write_stream_header(1, stream_xml("a", "int32", 1))
    with pytest.raises(ValueError, match="no header"):
        w.write_samples(2, [1.0], np.zeros((1, 1), "i4"))
    w.write_samples(1, [1.0, 2.0], np.array([[1], [2]], "i4"))
    w.flush(fsync=True)
    assert path.stat().st_size == w.bytes_written
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write_boundary()
    with XdfWriter(path, append=True) as w2:  # recovery appends missing footers
        w2.write_stream_header(9, stream_xml("late", "string", 1))
        w2.write_stream_footers()
    x = load_raw(path)
    assert x.streams[1].sample_count == 2
    assert x.streams[9].footer is not None
    assert x.problems == ["stream 1 (a) has no footer"]
    assert x.last_good_offset == x.file_size == path.stat().st_size
