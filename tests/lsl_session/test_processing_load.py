"""Load + sync equals pyxdf.load_xdf (sync + dejitter, default thresholds)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from test_processing_support import make_streams, write_xdf

from lsl_session.processing.load import (
    apply_clock_sync,
    dejitter,
    fit_clock_offsets,
    load_xdf_files,
    robust_fit,
    truncate_corrupted_offsets,
)
from lsl_session.xdf import XdfWriter

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "xdf"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.xdf"))
# our reader reads only validly framed chunks of these fuzzed files; pyxdf reads (see
# tests/lsl_session/xdf/test_xdf_reader.py); the stages are compared below instead
READER_DIFFERS = {
    "xdf_rs_out_of_order_sample_chunk.xdf",
    "xdf_rs_out_of_order_clock_offsets.xdf",
}
PYXDF_RAISES = {"xdf_rs_chunk_length_lie.xdf"}
TOL = 1e-9


def _pyxdf(path, **kwargs):
    try:
        return pyxdf.load_xdf(path, **kwargs)[0]
    except Exception:
        return None


def assert_equal_to_pyxdf(ours, ref):
    by_id = {s.stream_id: s for s in ours}
    assert set(by_id) == {r["info"]["stream_id"] for r in ref}
    for r in ref:
        s = by_id[r["info"]["stream_id"]]
        assert len(s.time_stamps) == len(r["time_stamps"]), s.name
        if len(s.time_stamps):
            assert np.max(np.abs(s.time_stamps - r["time_stamps"])) <= TOL, s.name
        if s.is_string:
            assert s.time_series == r["time_series"]
        else:
            assert np.array_equal(s.time_series, r["time_series"])
            assert s.time_series.dtype == r["time_series"].dtype
        assert s.segments == r["info"]["segments"]
        assert s.clock_segments == r["info"]["clock_segments"]
        assert s.effective_srate == pytest.approx(
            r["info"]["effective_srate"], rel=1e-9
        )
        assert list(s.clock_times) == list(r["clock_times"])


@pytest.mark.parametrize(
    "name", sorted(set(ALL_FIXTURES) - READER_DIFFERS - PYXDF_RAISES)
)
def test_fixture_equals_pyxdf(name):
    assert_equal_to_pyxdf(
        load_xdf_files(FIXTURES / name).streams, _pyxdf(FIXTURES / name)
    )


@pytest.mark.parametrize("name", sorted(PYXDF_RAISES))
def test_file_pyxdf_cannot_load_gives_clear_error(name):
    from lsl_session.errors import LslSessionError

    assert _pyxdf(FIXTURES / name) is None  # pyxdf raises on this file
    with pytest.raises(LslSessionError, match="no stream could be read"):
        load_xdf_files(FIXTURES / name)


@pytest.mark.parametrize("name", sorted(set(ALL_FIXTURES) - PYXDF_RAISES))
def test_stages_on_pyxdf_raw_equal_pyxdf(name):
    """Our pure stages applied to pyxdf's unsynced data give pyxdf's result."""
    ref = _pyxdf(FIXTURES / name)
    raw = _pyxdf(FIXTURES / name, synchronize_clocks=False, dejitter_timestamps=False)
    for r, u in zip(ref, raw, strict=True):
        stamps = np.array(u["time_stamps"], dtype=float)
        times, values = np.asarray(u["clock_times"]), np.asarray(u["clock_values"])
        footer = (u.get("footer") or {}).get("info", {}).get("sample_count", [None])[0]
        keep, keep_off = truncate_corrupted_offsets(
            len(stamps), None if footer is None else int(footer), times, values
        )
        stamps, times, values = stamps[:keep], times[:keep_off], values[:keep_off]
        segs = []
        if len(stamps) and len(times):
            segs = apply_clock_sync(stamps, times, fit_clock_offsets(times, values))
        srate = float(u["info"]["nominal_srate"][0])
        if srate > 0:
            segments, eff = dejitter(stamps, srate)
            assert segments == r["info"]["segments"]
            assert eff == pytest.approx(r["info"]["effective_srate"], rel=1e-9)
        assert segs == r["info"]["clock_segments"]
        assert np.allclose(stamps, r["time_stamps"], rtol=0, atol=TOL)


@pytest.mark.parametrize("reset", [False, True], ids=["drift", "drift+reset"])
@pytest.mark.parametrize("parts", [1, 3])
def test_synthetic_drift_and_reset_equal_pyxdf(tmp_path, reset, parts):
    specs, _ = make_streams(reset=reset)
    single = write_xdf(tmp_path / "single.xdf", specs)[0]
    ref = pyxdf.load_xdf(single)[0]
    files = write_xdf(tmp_path / "split.xdf", specs, parts=parts)
    result = load_xdf_files(files)
    assert not result.problems
    assert_equal_to_pyxdf(result.streams, ref)
    if reset:
        sine_b = next(s for s in result.streams if s.name == "sine_b")
        assert sine_b.fit["clock_resets"] == 1
        assert sine_b.clock_segments == [(0, 749), (750, 1499)]


def test_synced_stamps_recover_true_time(tmp_path):
    specs, true = make_streams(reset=True)
    streams = load_xdf_files(write_xdf(tmp_path / "r.xdf", specs)).streams
    for s, t in zip(streams[:2], true[:2], strict=True):
        assert np.max(np.abs(s.time_stamps - t)) < 2e-4  # jitter 0.2 ms, removed


def _write(path, build):
    with XdfWriter(path) as w:
        build(w)
    return path


def _xml(name, srate=100.0, desc=""):
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>T</type>'
        f"<channel_count>1</channel_count><nominal_srate>{srate}</nominal_srate>"
        f"<channel_format>float32</channel_format><source_id>{name}</source_id>"
        f"<desc>{desc}</desc></info>"
    )


def test_pylsl67_guard_and_can_drop_samples_equal_pyxdf(tmp_path):
    def build(w):
        w.write_stream_header(1, _xml("guarded"))
        drop = "<synchronization><can_drop_samples>true</can_drop_samples></synchronization>"
        w.write_stream_header(2, _xml("video", 30.0, drop))
        t = 100 + np.arange(1000) / 100.0
        w.write_samples(1, t, np.ones((1000, 1), "f4"))
        tv = 100 + np.cumsum(np.r_[0, np.where(np.arange(299) % 50 == 7, 2, 1)]) / 30.0
        w.write_samples(2, tv, np.ones((300, 1), "f4"))
        for k in range(6):
            w.write_clock_offset(1, 100 + 2 * k, 0.5 + 1e-5 * k)
            w.write_clock_offset(2, 100 + 2 * k, 0.25)
        w.write_stream_footers()
        w.write_samples(1, [110.5], np.ones((1, 1), "f4"))  # the pylsl#67 extra sample
        w.write_clock_offset(1, 5000.0, -3.0)  # and its garbage offset

    path = _write(tmp_path / "guard.xdf", build)
    result = load_xdf_files(path)
    assert_equal_to_pyxdf(result.streams, pyxdf.load_xdf(path)[0])
    guarded, video = result.streams
    assert len(guarded.time_stamps) == 1000
    assert any("pylsl#67" in p for p in result.problems)
    assert video.segments == [(0, 299)]  # not dejittered


def test_robust_fit_ignores_outliers():
    t = np.arange(50.0)
    v = 0.3 + 2e-6 * t
    v[[5, 20]] += 0.05
    a, b = robust_fit(t, v)
    _ols_b, ols_a = np.polyfit(t, v, 1)
    assert abs(a - 0.3) < 5e-5 < abs(ols_a - 0.3)  # 1000 ADMM iterations, as pyxdf
    assert abs(b - 2e-6) < 1e-6


def _robust_fit_1000(times, values, winsor=1e-4, rho=1.0):
    """pyxdf's ADMM Huber fit, all 1000 iterations (the reference)."""
    t = np.asarray(times, dtype=float) / winsor
    shift = t.min()
    t = t - shift
    y = np.asarray(values, dtype=float) / winsor
    design = np.column_stack((np.ones_like(t), t))
    lower = np.linalg.cholesky(design.T @ design)
    aty = design.T @ y
    kappa = 1.0 + 1.0 / rho
    z = u = np.zeros_like(y)
    x = np.zeros(2)
    for _ in range(1000):
        x = np.linalg.solve(lower.T, np.linalg.solve(lower, aty + design.T @ (z - u)))
        d = design @ x - y + u
        shrunk = np.sign(d) * np.maximum(np.abs(d) - kappa, 0.0)
        z = (rho * d + shrunk) / (1.0 + rho)
        u = d - z
    return float((x[0] - x[1] * shift) * winsor), float(x[1])


def test_robust_fit_stops_at_the_fixed_point_bit_identical(monkeypatch):
    """The early stop (an exact fixed point) returns the 1000-iteration result bit
    for bit, and it does stop early on recording-like offsets."""
    rng = np.random.default_rng(3)
    cases = []
    for n, noise in ((2, 0.0), (41, 3e-5), (300, 3e-5), (120, 1e-3)):
        t = 12345.0 + 5.0 * np.arange(n)
        v = -0.75 + 20e-6 * (t - t[0]) + rng.normal(0, noise, n)
        if n > 10:
            v[[3, n // 2]] += 0.05  # outliers
        cases.append((t, v))
    solves = []
    real_solve = np.linalg.solve
    monkeypatch.setattr(
        np.linalg, "solve", lambda *a: solves.append(1) or real_solve(*a)
    )
    for t, v in cases:
        solves.clear()
        got = robust_fit(t, v)
        calls = len(solves)
        monkeypatch.setattr(np.linalg, "solve", real_solve)
        assert got == _robust_fit_1000(t, v)  # exact, not approximate
        monkeypatch.setattr(
            np.linalg, "solve", lambda *a: solves.append(1) or real_solve(*a)
        )
        assert calls < 2 * 1000, len(t)  # stopped before the 1000th iteration


def test_bytes_and_corrupt_input(tmp_path):
    from lsl_session.errors import LslSessionError

    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"not an xdf file")
    with pytest.raises(LslSessionError, match="no readable XDF"):
        load_xdf_files(bad)
    # a truncated file loads what precedes the cut
    specs, _ = make_streams()
    good = write_xdf(tmp_path / "g.xdf", specs)[0]
    data = good.read_bytes()
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = load_xdf_files(cut)
    assert 0 < len(result.streams[0].time_stamps) < 600


@pytest.fixture
def pylsl_outlets(uid):
    pylsl = pytest.importorskip("pylsl")
    info_a = pylsl.StreamInfo(f"a_{uid}", "GSR", 2, 100, pylsl.cf_float32, f"{uid}_a")
    info_m = pylsl.StreamInfo(f"m_{uid}", "Markers", 1, 0, pylsl.cf_string, f"{uid}_m")
    outlets = [pylsl.StreamOutlet(info_a), pylsl.StreamOutlet(info_m)]
    yield pylsl, outlets
    del outlets


def test_real_recording_equals_pyxdf(tmp_path, uid, pylsl_outlets):
    pylsl, (eeg, markers) = pylsl_outlets
    from lsl_session.recorder import Recorder

    stop = threading.Event()

    def push():
        rng = np.random.default_rng(0)
        k = 0
        start = pylsl.local_clock()
        while not stop.is_set():
            now = pylsl.local_clock()
            n = int((now - start) * 100) - k
            if n > 0:
                stamps = start + (k + np.arange(n)) / 100.0
                eeg.push_chunk(
                    rng.random((n, 2)).astype("f4").tolist(), stamps.tolist()
                )
                if k // 100 != (k + n) // 100:
                    markers.push_sample([f"tick {k}"], now)
                k += n
            time.sleep(0.01)

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    path = tmp_path / "rec.xdf"
    rec = Recorder(path, streams=[f"source_id='{uid}_a'", f"source_id='{uid}_m'"])
    rec.start()
    time.sleep(3.5)
    rec.stop()
    stop.set()
    thread.join(2)
    ref = pyxdf.load_xdf(path)[0]
    result = load_xdf_files(path)
    assert_equal_to_pyxdf(result.streams, ref)
    assert max(len(s.time_stamps) for s in result.streams) > 200


def test_chunks_larger_than_the_read_buffer_equal_pyxdf(tmp_path, monkeypatch):
    """Samples chunks read into one reused buffer: small, then larger than the
    buffer (it grows), then small again; interleaved with a second stream, and the
    arrays populated in bulk (`populated`) hold exactly the decoded samples."""
    from lsl_session.processing import buffers

    monkeypatch.setattr(buffers, "POPULATE_BYTES", 1)  # every array mapped
    xml = _xml("big", 1000.0).replace(
        "<channel_count>1</channel_count>", "<channel_count>16</channel_count>"
    )
    rng = np.random.default_rng(11)
    sizes = [10, 3000, 7, 9000, 250, 1]  # 16 ch float32: 1.2 to 585 kB per chunk

    def build(w):
        w.write_stream_header(1, xml)
        w.write_stream_header(2, _xml("small", 100.0))
        k = 0
        for m in sizes:
            t = 50.0 + (k + np.arange(m)) / 1000.0 + rng.normal(0, 1e-5, m)
            w.write_samples(1, t, rng.normal(0, 5, (m, 16)).astype(np.float32))
            w.write_samples(2, [50.0 + k / 1000.0], [[float(k)]])
            w.write_clock_offset(1, 50.0 + k / 1000.0, -0.5)
            w.write_clock_offset(2, 50.0 + k / 1000.0, -0.5)
            k += m
        w.write_stream_footers()

    path = _write(tmp_path / "b.xdf", build)
    ours = {s.name: s for s in load_xdf_files(path).streams}
    theirs = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(path)[0]}
    for name in ("big", "small"):
        np.testing.assert_array_equal(
            ours[name].time_series, theirs[name]["time_series"]
        )
        assert (
            np.max(np.abs(ours[name].time_stamps - theirs[name]["time_stamps"])) < TOL
        )
    assert ours["big"].time_series.shape == (sum(sizes), 16)


def test_populated_arrays_are_writable_and_sized():
    from lsl_session.processing.buffers import POPULATE_BYTES, populated

    big = populated((POPULATE_BYTES // 4 + 10, 2), np.float32)
    small = populated((3,), np.float64)
    assert big.shape == (POPULATE_BYTES // 4 + 10, 2) and big.dtype == np.float32
    assert big.base is not None and small.base is None  # mapped vs numpy.empty
    big[:] = 1.5
    big[-1, -1] = 7.0
    assert float(big.sum()) == 1.5 * (big.size - 1) + 7.0
    assert populated((0, 4), np.int16).shape == (0, 4)


def test_windowed_sample_pass_equals_chunk_by_chunk_and_pyxdf(tmp_path, monkeypatch):
    """Chunks decoded a window at a time (runs of fixed-size chunks joined) give
    exactly what one chunk at a time gives, and pyxdf's values: windows cut
    between chunks, a chunk larger than the window, a chunk with deduced stamps
    (no 8-byte stamps) inside a run, and two interleaved streams."""
    import struct

    from lsl_session.processing import read_pass
    from lsl_session.xdf._format import encode_varlen

    xml = _xml("a", 100.0).replace(
        "<channel_count>1</channel_count>", "<channel_count>4</channel_count>"
    )
    rng = np.random.default_rng(12)

    def deduced_chunk(sid, values):
        body = struct.pack("<HI", 3, sid) + encode_varlen(len(values))
        body += b"".join(b"\x00" + row.tobytes() for row in values)
        return encode_varlen(len(body)) + body

    def build(w):
        w.write_stream_header(1, xml)
        w.write_stream_header(2, _xml("b", 100.0))
        k = 0
        for m in (5, 40, 3, 600, 7, 0, 9, 11):
            t = 10.0 + (k + np.arange(m)) / 100.0
            if m == 0:  # deduced stamps: 6 samples, 0.01 s after the last one
                w._write(deduced_chunk(1, rng.normal(0, 1, (6, 4)).astype(np.float32)))
                k += 6
            else:
                w.write_samples(1, t, rng.normal(0, 1, (m, 4)).astype(np.float32))
                k += m
            w.write_samples(2, [10.0 + k / 100.0], [[float(k)]])
            w.write_clock_offset(1, 10.0 + k / 100.0, 0.25)
            w.write_clock_offset(2, 10.0 + k / 100.0, 0.25)
        w.write_stream_footers()

    path = _write(tmp_path / "w.xdf", build)
    whole = {s.name: s for s in load_xdf_files(path).streams}
    monkeypatch.setattr(read_pass, "WINDOW_BYTES", 300)  # most windows: 1–2 chunks
    monkeypatch.setattr(read_pass, "WINDOW_CHUNKS", 3)
    small = {s.name: s for s in load_xdf_files(path).streams}
    theirs = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(path)[0]}
    assert len(whole["a"].time_stamps) == 5 + 40 + 3 + 600 + 7 + 6 + 9 + 11
    for name in ("a", "b"):
        np.testing.assert_array_equal(whole[name].time_series, small[name].time_series)
        np.testing.assert_array_equal(whole[name].time_stamps, small[name].time_stamps)
        np.testing.assert_array_equal(
            whole[name].time_series, theirs[name]["time_series"]
        )
        assert (
            np.max(np.abs(whole[name].time_stamps - theirs[name]["time_stamps"])) < TOL
        )
