"""Fuzzing: mutated fixtures and recordings never crash or hang the reader."""

from __future__ import annotations

import io
import re
import struct
from collections import Counter

import numpy as np
import pytest
from xdf_helpers import FIXTURES, MANGLED, WELL_FORMED, build_recording, stream_xml

from lsl_session.xdf import (
    BOUNDARY_UUID,
    ChunkTag,
    XdfFormatError,
    XdfWriter,
    iter_chunks,
    load_raw,
    summarize,
)


def _strings_file() -> bytes:
    buf = io.BytesIO()
    with XdfWriter(buf) as w:
        w.write_stream_header(1, stream_xml("txt", "string", 3, 10.0))
        w.write_stream_header(2, stream_xml("i8", "int8", 0, 10.0))
        for k in range(4):
            w.write_samples(1, [k, k + 0.5], [["é" * k, "", "x" * 300]] * 2)
            w.write_samples(2, [k], np.zeros((1, 0), "i1"))
            w.write_boundary()
        w.write_stream_footers()
    return buf.getvalue()


def _bases() -> list[bytes]:
    bases = [(FIXTURES / n).read_bytes() for n in WELL_FORMED + MANGLED]
    bases[1] = bases[1][:60_000]  # a torn prefix of clock_resets.xdf keeps cases fast
    return [*bases, build_recording(), build_recording(footers=False), _strings_file()]


BASES = _bases()


def _chunks(data: bytes):
    return list(iter_chunks(data))


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Apply 1–3 random corruptions."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        n = len(buf)
        pos = int(rng.integers(0, max(n, 1)))
        kind = int(rng.integers(0, 11))
        if kind == 0:  # bit flips
            for _ in range(int(rng.integers(1, 9))):
                p = int(rng.integers(0, max(n, 1)))
                if p < n:
                    buf[p] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # overwrite
            buf[pos : pos + 16] = rng.bytes(int(rng.integers(1, 17)))[: n - pos]
        elif kind == 2:  # insert
            buf[pos:pos] = rng.bytes(int(rng.integers(1, 64)))
        elif kind == 3:  # delete
            del buf[pos : pos + int(rng.integers(1, 64))]
        elif kind == 4:  # truncate
            del buf[pos:]
        elif kind == 5:  # splice a boundary signature anywhere
            buf[pos:pos] = BOUNDARY_UUID
        else:
            try:
                chunks = _chunks(bytes(buf))
            except XdfFormatError:
                continue
            if not chunks:
                continue
            c = chunks[int(rng.integers(0, len(chunks)))]
            if kind == 6:  # huge or odd Length field
                values = [2**62, 2**64 - 1, 2**32 - 1, 0, 1, 2, 7, n * 2]
                value = values[int(rng.integers(0, len(values)))]
                width = 8 if value >= 2**32 else int(rng.choice([1, 4, 8]))
                if value >= 256 and width == 1:
                    width = 4
                new = bytes([width]) + value.to_bytes(width, "little")
                buf[c.offset : c.content_offset - 2] = new
            elif kind == 7:  # drop, duplicate or move a chunk
                raw = bytes(buf[c.offset : c.end])
                del buf[c.offset : c.end]
                if rng.random() < 0.7:
                    dest = chunks[int(rng.integers(0, len(chunks)))].offset
                    dest = min(dest, len(buf))
                    buf[dest:dest] = raw * int(rng.integers(1, 3))
            elif kind == 8 and c.tag == ChunkTag.SAMPLES:  # huge NumSamples
                p = c.content_offset + 4
                buf[p : p + 5] = b"\x08" + struct.pack("<Q", 2**63 + 5)[:4]
            elif kind == 9 and c.stream_id is not None:  # wrong stream id
                buf[c.content_offset : c.content_offset + 4] = rng.bytes(4)
            elif kind == 10 and c.tag == ChunkTag.STREAM_HEADER:  # mangle header fields
                seg = bytes(buf[c.content_offset : c.end])
                digits = rng.choice([b"9", b"0", b"-", b"x"])
                seg = re.sub(rb"\d", lambda m: digits, seg, count=3)  # noqa: B023
                buf[c.content_offset : c.end] = seg
    return bytes(buf)


def check_case(data: bytes, errors: Counter, as_file: bool) -> None:
    source = io.BytesIO(data) if as_file else data
    try:
        x = load_raw(source)
    except XdfFormatError:
        errors["XdfFormatError"] += 1
        assert len(data) < 4 or data[:4] != b"XDF:"
        return
    # bounded work: every walker iteration consumes at least one byte, every sample
    # at least one byte of the file
    assert x._steps <= len(data)
    assert x.n_chunks <= len(data) // 4
    assert 4 <= x.last_good_offset <= len(data)
    assert sum(s.sample_count for s in x.streams.values()) <= len(data)
    for s in x.streams.values():
        assert len(s.time_stamps) == s.sample_count == len(s.time_series)
        assert len(s.clock_times) == len(s.clock_values)
    h = load_raw(data, headers_only=True)
    assert list(h.streams) == list(x.streams)
    assert len(list(iter_chunks(data))) == x.n_chunks
    summarize(data)
    errors["ok"] += 1


def run_fuzz(n_cases: int, seed: int) -> Counter:
    rng = np.random.default_rng(seed)
    errors: Counter = Counter()
    for case in range(n_cases):
        base = BASES[case % len(BASES)]
        data = mutate(base, rng)
        try:
            check_case(data, errors, as_file=bool(case % 2))
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(f"case {case} (seed {seed}) raised {err!r}") from err
    return errors


def test_fuzz_default():
    errors = run_fuzz(300, seed=12345)
    assert set(errors) <= {"ok", "XdfFormatError"}
    assert errors["ok"] >= 250


@pytest.mark.slow
def test_fuzz_many():
    errors = run_fuzz(10_000, seed=2024)
    assert set(errors) <= {"ok", "XdfFormatError"}
    assert errors["ok"] >= 9000


@pytest.mark.parametrize("data", BASES[-3:])
def test_every_single_byte_deletion(data):
    errors: Counter = Counter()
    for pos in range(4, len(data), 7):
        check_case(data[:pos] + data[pos + 1 :], errors, as_file=False)
    assert errors["ok"] > 0
