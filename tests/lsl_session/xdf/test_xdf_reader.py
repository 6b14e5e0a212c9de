"""Reader: parity with pyxdf on the conformance fixtures, truncation, fast path."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import pyxdf
from xdf_helpers import FIXTURES, MANGLED, WELL_FORMED, build_recording, stream_xml

from lsl_session.xdf import (
    ChunkTag,
    XdfFormatError,
    XdfWriter,
    iter_chunks,
    load_raw,
    summarize,
)


def pyxdf_load(source):
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    return pyxdf.load_xdf(source, synchronize_clocks=False, dejitter_timestamps=False)


def footer_values(p_footer: dict) -> dict:
    info = p_footer["info"]
    offsets = info.get("clock_offsets", [None])[0] or {}
    return {
        "first_timestamp": float(info["first_timestamp"][0]),
        "last_timestamp": float(info["last_timestamp"][0]),
        "sample_count": int(float(info["sample_count"][0])),
        "clock_offsets": [
            (float(o["time"][0]), float(o["value"][0]))
            for o in offsets.get("offset", [])
        ],
    }


def assert_same_as_pyxdf(ours, theirs):
    assert list(ours.streams) == [s["info"]["stream_id"] for s in theirs]
    for p in theirs:
        s = ours.streams[p["info"]["stream_id"]]
        for key in ("name", "type", "source_id", "channel_format"):
            assert s.info.get(key) == (p["info"].get(key) or [None])[0]
        assert s.info["channel_count"] == int(p["info"]["channel_count"][0])
        assert s.info["nominal_srate"] == float(p["info"]["nominal_srate"][0])
        assert s.time_stamps.tobytes() == np.asarray(p["time_stamps"], "f8").tobytes()
        if s.channel_format == "string":
            assert s.time_series == p["time_series"]
        else:
            assert s.time_series.shape == p["time_series"].shape
            if len(s.time_series):  # pyxdf returns float64 zeros when empty
                assert s.time_series.dtype == p["time_series"].dtype
                assert s.time_series.tobytes() == p["time_series"].tobytes()
        assert s.clock_times.tolist() == p["clock_times"]
        assert s.clock_values.tolist() == p["clock_values"]
        if "footer" in p:
            assert {
                k: s.footer[k] for k in footer_values(p["footer"])
            } == footer_values(p["footer"])
        else:
            assert s.footer is None


@pytest.mark.parametrize("name", WELL_FORMED)
@pytest.mark.parametrize("as_file", [False, True])
def test_fixture_matches_pyxdf(name, as_file):
    path = FIXTURES / name
    ours = load_raw(path.open("rb") if as_file else path)
    theirs, header = pyxdf_load(path)
    assert ours.header["version"] == header["info"]["version"][0] == "1.0"
    assert_same_as_pyxdf(ours, theirs)
    assert ours.problems == []
    assert ours.last_good_offset == ours.file_size == path.stat().st_size


@pytest.mark.parametrize("name", MANGLED)
def test_mangled_fixture_partial_result(name):
    data = (FIXTURES / name).read_bytes()
    ours = load_raw(data)
    assert ours.problems
    assert ours.last_good_offset <= len(data)
    assert ours._steps <= len(data)
    try:
        theirs, _ = pyxdf_load(data)
    except Exception:  # pyxdf raises on the chunk length lie
        assert name == "xdf_rs_chunk_length_lie.xdf"
        assert ours.streams == {}
        assert ours.header == {"version": "000"}
        return
    # same streams and headers; pyxdf trusts content sizes over Length fields and so
    # reads different (garbage) data after the mangled chunks: we read only chunks
    # whose framing is valid
    assert list(ours.streams) == [s["info"]["stream_id"] for s in theirs]
    assert ours.streams[36712496].info["channel_count"] == 0


def test_out_of_order_sample_chunk_keeps_valid_chunks():
    path = FIXTURES / "xdf_rs_out_of_order_sample_chunk.xdf"
    s = load_raw(path).streams[0]
    (p, _), _ = pyxdf_load(path)
    # pyxdf loses framing after the 0-channel string chunk; we keep all 9 samples
    assert s.sample_count == 9
    assert len(p["time_stamps"]) == 1
    assert s.time_series[:1].tobytes() == p["time_series"].tobytes()
    assert s.time_stamps[:1].tobytes() == p["time_stamps"].tobytes()
    assert len(s.clock_times) == 2


def test_minimal_readme_values():
    x = load_raw(FIXTURES / "minimal.xdf")
    assert list(x.streams) == [0, 46202862]
    s0, s1 = x.streams.values()
    assert s0.info["created_at"] == "50942.723319709003"
    assert s0.info["uid"] == "xdfwriter_11_int"
    assert s0.info["channel_format"] == "int16"
    assert s0.info["desc"] is None
    rows = [[192, 255, 238], [12, 22, 32], [13, 23, 33], [14, 24, 34], [15, 25, 35]]
    assert s0.time_series.tolist() == rows + rows[1:]
    np.testing.assert_allclose(s0.time_stamps, np.arange(5.1, 5.95, 0.1))
    assert s0.clock_times.tolist() == [6.1, 7.1]
    assert s0.clock_values.tolist() == [-0.1, -0.1]
    assert s0.footer["first_timestamp"] == 5.1
    assert s0.footer["sample_count"] == 9
    assert s0.footer["clock_offsets"][0] == (50979.76, -0.01)
    assert s0.footer["writer"] == "LabRecorder xdfwriter"
    assert len(s1.time_series[0][0]) == 321
    assert [r[0] for r in s1.time_series[1:]] == ["Hello", "World", "from", "LSL"] * 2
    # accumulated omitted stamps (5.1 + 8 x 0.1, as pyxdf 1.17.5 computes it)
    assert s1.time_stamps[-1] == 5.899999999999999
    assert x._slow_chunks == 2  # the int16 chunks with omitted stamps


def test_empty_streams_readme_values():
    x = load_raw(FIXTURES / "empty_streams.xdf")
    assert list(x.streams) == [3, 4, 1, 2]
    s4 = x.streams[4]
    assert s4.time_series[:, 0].tolist() == list(range(10))
    np.testing.assert_allclose(
        s4.time_stamps, 91725.21394789 + np.arange(10), atol=1e-8
    )
    assert x.streams[1].time_series == [['{"state": 2}']]
    assert x.streams[3].time_series.shape == (0, 1)
    assert x.streams[3].time_series.dtype == np.float32
    assert x.streams[2].time_series == []
    assert x.streams[3].footer["sample_count"] == 0
    assert x.streams[3].info["desc"]["channels"][0]["channel"][0]["label"] == ["ch:00"]


def test_clock_resets_readme_values():
    x = load_raw(FIXTURES / "clock_resets.xdf")
    s1, s2 = x.streams[1], x.streams[2]
    assert s1.info["source_id"] == "myuidw43536"
    assert s1.info["hostname"] == "BP-LP-022"
    assert (s1.sample_count, s2.sample_count) == (175, 27815)
    assert s2.footer["clock_offsets"][0] == (653156.0261441499, -652340.28383985)
    np.testing.assert_allclose(
        s2.clock_values, [v for _, v in s2.footer["clock_offsets"]], atol=1e-4
    )


@pytest.mark.parametrize("name", WELL_FORMED)
def test_headers_only(name):
    full = load_raw(FIXTURES / name)
    fast = load_raw(FIXTURES / name, headers_only=True)
    assert fast.headers_only
    assert fast.problems == []
    for sid, s in full.streams.items():
        f = fast.streams[sid]
        assert f.sample_count == s.sample_count
        assert len(f.time_stamps) == 0
        assert f.footer == s.footer
        assert f.info == s.info
        assert f.clock_times.tolist() == s.clock_times.tolist()


def test_summarize_fixture():
    info = summarize(FIXTURES / "empty_streams.xdf")
    assert info["file_size"] == 7221
    assert info["problems"] == []
    by_id = {s["stream_id"]: s for s in info["streams"]}
    assert [s["stream_id"] for s in info["streams"]] == [3, 4, 1, 2]
    assert by_id[4]["sample_count"] == 10
    assert by_id[4]["footer"]
    assert by_id[4]["duration"] == pytest.approx(10.0)  # footer: LabRecorder-style
    assert by_id[3]["first_timestamp"] is None
    assert by_id[3]["clock_offsets"] == 7
    assert by_id[1]["channel_format"] == "string"


def test_summarize_without_footers_reads_samples():
    data = build_recording(footers=False)
    info = summarize(data)
    assert any("no footer" in p for p in info["problems"])
    eeg = info["streams"][0]
    assert eeg["name"] == "eeg"
    assert eeg["sample_count"] == 61
    assert eeg["first_timestamp"] == 1000.0
    assert not eeg["footer"]
    assert eeg["last_timestamp"] == pytest.approx(1000.6)
    assert eeg["clock_offsets"] == 2


@pytest.mark.parametrize("data", [b"", b"XD", b"XDF", b"PK\x03\x04rest", b"\x00" * 100])
def test_not_xdf(data):
    with pytest.raises(XdfFormatError):
        load_raw(data)
    with pytest.raises(XdfFormatError):
        list(iter_chunks(data))


def test_magic_only_and_text_file(tmp_path):
    x = load_raw(b"XDF:")
    assert x.streams == {}
    assert x.last_good_offset == 4
    assert x.problems == ["no valid FileHeader chunk"]
    (tmp_path / "t.xdf").write_bytes(b"XDF:")
    with pytest.raises(TypeError, match="binary"), open(tmp_path / "t.xdf") as f:
        load_raw(f)


def test_unknown_tag_and_orphans_are_tolerated():
    from lsl_session.xdf.writer import (
        encode_chunk,
        encode_clock_offset,
        encode_file_header,
        encode_samples,
        encode_stream_header,
    )

    data = (
        encode_file_header()
        + encode_chunk(99, b"future")
        + encode_clock_offset(5, 1.0, 2.0)  # before its header
        + encode_samples(6, [1.0], [["x"]], "string")  # never gets a header
        + encode_stream_header(5, stream_xml("late", "double64", 1))
        + encode_stream_header(5, stream_xml("dup", "double64", 1))
        + encode_stream_header(7, stream_xml("bad", "float64", 1))
        + encode_samples(7, [1.0], np.zeros((1, 1)), "double64")
    )
    x = load_raw(data)
    assert x.streams[5].name == "late"
    assert x.streams[5].clock_times.tolist() == [1.0]
    assert x.last_good_offset == len(data)
    text = "\n".join(x.problems)
    for needle in ("unknown chunk tag 99", "stream 6 skipped", "duplicate",
                   "unknown channel_format 'float64'", "stream 7 skipped"):  # fmt: skip
        assert needle in text


def chunk_ends(data: bytes) -> set[int]:
    return {4} | {c.end for c in iter_chunks(data)}


@pytest.mark.parametrize("footers", [True, False])
def test_truncation_inside_last_three_chunks(footers):
    data = build_recording(footers=footers)
    chunks = list(iter_chunks(data))
    ends = chunk_ends(data)
    full = load_raw(data)
    checked_pyxdf = set()
    for cut in range(chunks[-3].offset, len(data) + 1):
        x = load_raw(data[:cut])
        assert x.last_good_offset <= cut
        assert x.last_good_offset in ends
        assert x._steps <= cut
        if cut in ends:
            assert x.last_good_offset == cut
        else:
            assert any("torn" in p for p in x.problems)
        for sid, s in x.streams.items():
            n = s.sample_count
            ref = full.streams[sid]
            assert s.time_stamps.tobytes() == ref.time_stamps[:n].tobytes()
        if x.last_good_offset not in checked_pyxdf:  # the repaired file loads
            checked_pyxdf.add(x.last_good_offset)
            theirs, _ = pyxdf_load(data[: x.last_good_offset])
            assert_same_as_pyxdf(load_raw(data[: x.last_good_offset]), theirs)
    assert len(checked_pyxdf) == 4  # the ends of chunks -4 .. -1


def test_truncation_of_fixture_never_raises():
    data = (FIXTURES / "minimal.xdf").read_bytes()
    ends = chunk_ends(data)
    for cut in range(len(data) + 1):
        if cut < 4:
            with pytest.raises(XdfFormatError):
                load_raw(data[:cut])
            continue
        x = load_raw(data[:cut])
        assert x.last_good_offset <= cut
        assert x.last_good_offset in ends


def test_large_chunked_file_uses_vectorised_path(tmp_path):
    n, nch = 1_000_000, 32
    path = tmp_path / "big.xdf"
    stamps = 10.0 + np.arange(n) / 1000.0
    block = np.arange(nch, dtype="f4")[None, :] + np.arange(10_000, dtype="f4")[:, None]
    with XdfWriter(path) as w:
        w.write_stream_header(1, stream_xml("big", "float32", nch, 1000.0))
        for start in range(0, n, 10_000):
            w.write_samples(1, stamps[start : start + 10_000], block)
            if start % 200_000 == 0:
                w.write_boundary()
        w.write_stream_footers()
    x = load_raw(path)
    s = x.streams[1]
    assert x.problems == []
    assert x._slow_chunks == 0
    assert s.time_series.shape == (n, nch)
    assert s.time_series.dtype == np.float32
    assert s.time_series[-1].tolist() == (np.arange(nch) + 9999.0).tolist()
    assert s.time_stamps.tobytes() == stamps.tobytes()
    assert sum(c.tag == ChunkTag.SAMPLES for c in iter_chunks(path)) >= 100


def test_omitted_stamps_match_pyxdf():
    from lsl_session.xdf._format import encode_varlen
    from lsl_session.xdf.writer import encode_chunk, encode_file_header

    def sample(stamp, payload):
        head = b"\x00" if stamp is None else b"\x08" + struct.pack("<d", stamp)
        return head + payload

    ints = [sample(None, struct.pack("<ii", 1, 2)), sample(3.25, b"\xff" * 8)]
    ints += [sample(None, struct.pack("<ii", k, -k)) for k in range(5)]
    strs = [sample(None, encode_varlen(2) + b"ab"), sample(None, b"\x01\x00")]
    data = (
        encode_file_header()
        + encode_chunk(2, stream_xml("i", "int32", 2, 8.0).encode(), 1)
        + encode_chunk(2, stream_xml("s", "string", 1, 0.0).encode(), 2)
        + encode_chunk(3, encode_varlen(7) + b"".join(ints), 1)
        + encode_chunk(3, encode_varlen(2) + b"".join(strs), 2)
        + encode_chunk(3, encode_varlen(1) + sample(None, b"\x00" * 8), 1)
    )
    x = load_raw(data)
    assert x._slow_chunks == 2
    assert x.streams[1].time_stamps.tolist()[:3] == [0.125, 3.25, 3.375]
    assert x.streams[2].time_series == [["ab"], [""]]
    theirs, _ = pyxdf_load(data)
    assert_same_as_pyxdf(x, theirs)
