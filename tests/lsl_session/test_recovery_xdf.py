"""XDF repair: every truncation inside the last three chunks becomes a loadable file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import pyxdf

from lsl_session.recovery import repair_xdf
from lsl_session.xdf.reader import load_raw
from lsl_session.xdf.writer import (
    encode_boundary,
    encode_clock_offset,
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
)

STREAMS = {
    1: ("EEG", "EEG", 4, 100.0, "float32"),
    2: ("Markers", "Markers", 1, 0.0, "string"),
    3: ("Counter", "Misc", 2, 10.0, "int16"),
}


def _xml(sid: int) -> str:
    name, typ, nch, srate, fmt = STREAMS[sid]
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>{typ}</type>'
        f"<channel_count>{nch}</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>{fmt}</channel_format><source_id>test/{sid}</source_id>"
        f"<hostname>lab</hostname><desc/></info>"
    )


def _samples(sid: int, t0: float, n: int) -> bytes:
    _, _, nch, srate, fmt = STREAMS[sid]
    stamps = t0 + np.arange(n) * (1 / srate if srate else 0.37)
    if fmt == "string":
        values = [[f"m{t:.3f}"] for t in stamps]
    else:
        values = (np.arange(n * nch).reshape(n, nch) % 100).astype(fmt)
    return encode_samples(sid, stamps, values, fmt)


def build_chunks() -> list[tuple[bytes, int | None, int]]:
    """(chunk bytes, stream id, n samples) in file order; no footers."""
    chunks: list[tuple[bytes, int | None, int]] = [(encode_file_header(), None, 0)]
    chunks += [(encode_stream_header(sid, _xml(sid)), sid, 0) for sid in STREAMS]
    t = 1000.0
    for block in range(3):
        for sid in STREAMS:
            chunks.append((encode_clock_offset(sid, t, -0.25 + 0.001 * block), sid, 0))
        for sid, n in ((1, 10), (2, 2), (3, 3)):
            chunks.append((_samples(sid, t, n), sid, n))
        chunks.append((encode_boundary(), None, 0))
        t += 1.0
    # the last three chunks: samples, a clock offset, string samples
    chunks.append((_samples(1, t, 8), 1, 8))
    chunks.append((encode_clock_offset(2, t, -0.2), 2, 0))
    chunks.append((_samples(2, t, 3), 2, 3))
    return chunks


def _counts(chunks, cut: int) -> dict[int, int]:
    counts, pos = dict.fromkeys(STREAMS, 0), 0
    for data, sid, n in chunks:
        pos += len(data)
        if pos <= cut and n:
            counts[sid] += n
    return counts


def _check_loadable(path, expected: dict[int, int], sync: bool = True) -> None:
    streams, header = pyxdf.load_xdf(
        str(path), synchronize_clocks=sync, dejitter_timestamps=sync
    )
    assert header["info"]["version"][0] == "1.0"
    by_id = {s["info"]["stream_id"]: s for s in streams}
    assert set(by_id) == set(STREAMS)
    for sid, s in by_id.items():
        assert "footer" in s, f"stream {sid} lacks a footer"
        count = int(s["footer"]["info"]["sample_count"][0])
        assert count == len(s["time_stamps"]) == expected[sid]


def test_truncated_everywhere_in_last_three_chunks(tmp_path, caplog):
    caplog.set_level(logging.ERROR)  # pyxdf warns about every dejitter oddity
    chunks = build_chunks()
    full = b"".join(c[0] for c in chunks)
    start = len(full) - sum(len(c[0]) for c in chunks[-3:])
    path = tmp_path / "cut.xdf"
    for cut in range(start, len(full)):
        for old in tmp_path.glob("cut.xdf*"):
            old.unlink()
        data = full[:cut]
        path.write_bytes(data)
        rep = repair_xdf(path)
        repaired = path.read_bytes()
        keep = len(data) - rep.torn_bytes
        assert repaired[:keep] == data[:keep]
        if rep.torn_bytes:
            assert rep.torn_tail is not None
            assert rep.torn_tail.read_bytes() == data[keep:]
        assert sorted(rep.footers_added) == [1, 2, 3]
        # pyxdf's robust clock fit costs ~60 ms: full options on every 16th cut
        _check_loadable(path, _counts(chunks, cut), sync=(cut - start) % 16 == 0)
        again = repair_xdf(path)
        assert not again.changed
        assert path.read_bytes() == repaired


def test_complete_file_without_footers_gets_footers_with_offsets(tmp_path):
    chunks = build_chunks()
    path = tmp_path / "nofooter.xdf"
    path.write_bytes(b"".join(c[0] for c in chunks))
    rep = repair_xdf(path)
    assert rep.torn_bytes == 0
    assert rep.torn_tail is None
    raw = load_raw(path)
    assert not raw.problems
    for sid, s in raw.streams.items():
        assert s.footer["sample_count"] == s.sample_count
        assert s.footer["first_timestamp"] == s.time_stamps[0]
        assert s.footer["last_timestamp"] == s.time_stamps[-1]
        offsets = list(
            zip(s.clock_times.tolist(), s.clock_values.tolist(), strict=False)
        )
        assert [tuple(o) for o in s.footer["clock_offsets"]] == offsets
        assert len(offsets) >= 3, sid


def test_footers_only_for_streams_that_lack_one(tmp_path):
    chunks = build_chunks()
    body = b"".join(c[0] for c in chunks)
    footer1 = encode_stream_footer(1, 1000.0, 1003.07, 38, [(1000.0, -0.25)])
    path = tmp_path / "partial.xdf"
    path.write_bytes(body + footer1 + encode_stream_footer(2, 1.0, 2.0, 9)[:-5])
    rep = repair_xdf(path)
    assert sorted(rep.footers_added) == [2, 3]
    assert rep.torn_bytes > 0
    raw = load_raw(path)
    assert raw.streams[1].footer["last_timestamp"] == 1003.07  # left as written
    assert all(s.footer is not None for s in raw.streams.values())


@pytest.mark.parametrize("data", [b"", b"XD", b"XDF:", b"XDF:\x01"])
def test_file_cut_inside_the_file_header(tmp_path, data):
    path = tmp_path / "tiny.xdf"
    path.write_bytes(data)
    rep = repair_xdf(path)
    assert rep.file_header_added
    streams, header = pyxdf.load_xdf(str(path))
    assert streams == []
    assert header["info"]["version"][0] == "1.0"
    assert path.read_bytes().startswith(data[:4] if data[:4] == b"XDF:" else b"XDF:")
    tails = list(tmp_path.glob("tiny.xdf.torn-tail*"))
    assert (
        (b"".join(p.read_bytes() for p in tails)) == data[4:] if len(data) > 4 else True
    )
    assert not repair_xdf(path).changed


def test_not_an_xdf_file_is_left_alone(tmp_path):
    path = tmp_path / "other.xdf"
    path.write_bytes(b"hello world, not xdf")
    rep = repair_xdf(path)
    assert not rep.changed
    assert rep.problems
    assert path.read_bytes() == b"hello world, not xdf"


def test_dry_run_changes_nothing(tmp_path):
    chunks = build_chunks()
    full = b"".join(c[0] for c in chunks)
    path = tmp_path / "dry.xdf"
    path.write_bytes(full[:-7])
    rep = repair_xdf(path, dry_run=True)
    assert rep.changed
    assert rep.torn_bytes
    assert rep.footers_added
    assert path.read_bytes() == full[:-7]
    assert list(tmp_path.iterdir()) == [path]
