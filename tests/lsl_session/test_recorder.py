"""The recorder against real pylsl outlets, read back with pyxdf."""

from __future__ import annotations

import time

import numpy as np
import pylsl
import pytest
import pyxdf
from lsl_helpers import MarkerSource, RegularSource, wait_until

from lsl_session.errors import QueryError, RecorderError
from lsl_session.recorder import Recorder
from lsl_session.xdf.reader import load_raw


def _load(path):
    streams, _ = pyxdf.load_xdf(
        str(path), synchronize_clocks=False, dejitter_timestamps=False
    )
    return {s["info"]["name"][0]: s for s in streams}


def _check_complete(stream, pushed: np.ndarray, stop_clock: float) -> None:
    """No gaps; every pushed sample from the first recorded one to stop is there."""
    stamps = stream["time_stamps"]
    values = stream["time_series"][:, 0].astype(np.int64)
    assert len(stamps) > 0
    assert np.all(np.diff(values) == 1), "gap or duplicate in the recording"
    first = np.searchsorted(pushed, stamps[0])
    expected = pushed[first:][pushed[first:] <= stop_clock]
    assert len(stamps) >= len(expected), (
        f"tail lost: {len(expected) - len(stamps)} samples pushed before stop missing"
    )
    np.testing.assert_array_equal(stamps[: len(expected)], expected)
    footer = stream["footer"]["info"]
    assert float(footer["last_timestamp"][0]) == stamps[-1]
    assert int(footer["sample_count"][0]) == len(stamps)
    assert float(footer["first_timestamp"][0]) == stamps[0]


def _record_three_streams(tmp_path, uid, seconds):
    eeg = RegularSource(f"eeg_{uid}", f"eeg_{uid}").start()
    counter = RegularSource(
        f"cnt_{uid}",
        f"cnt_{uid}",
        channels=1,
        srate=100,
        fmt=pylsl.cf_int32,
        stype="Counter",
    ).start()
    markers = MarkerSource(f"mk_{uid}", f"mk_{uid}").start()
    rec = Recorder(
        tmp_path / "rec.xdf",
        streams=[
            f"source_id='eeg_{uid}'",
            f"source_id='cnt_{uid}'",
            f"name='mk_{uid}'",
        ],
    )
    rec.start()
    time.sleep(seconds)
    summary = rec.stop()
    pushed_eeg, pushed_cnt = eeg.stop(), counter.stop()
    sent = markers.stop()
    return rec, summary, pushed_eeg, pushed_cnt, sent


def _assert_recording(tmp_path, uid, rec, summary, pushed_eeg, pushed_cnt, sent):
    streams = _load(tmp_path / "rec.xdf")
    assert set(streams) == {f"eeg_{uid}", f"cnt_{uid}", f"mk_{uid}"}
    _check_complete(streams[f"eeg_{uid}"], pushed_eeg, rec.stop_clock)
    _check_complete(streams[f"cnt_{uid}"], pushed_cnt, rec.stop_clock)
    assert streams[f"cnt_{uid}"]["time_series"].dtype == np.int32
    mk = streams[f"mk_{uid}"]
    got = [v[0] for v in mk["time_series"]]
    first = next(i for i, (label, _) in enumerate(sent) if label == got[0])
    expected = [label for label, ts in sent[first:] if ts <= rec.stop_clock]
    assert got[: len(expected)] == expected
    for s in streams.values():
        assert len(s["clock_times"]) >= 1
        assert s["clock_times"][0] + s["clock_values"][0] - rec.start_clock < 1.0
    ids = {s["name"]: s["stream_id"] for s in summary["streams"]}
    assert sorted(ids.values()) == [1, 2, 3]
    assert ids[f"cnt_{uid}"] < ids[f"eeg_{uid}"] < ids[f"mk_{uid}"]  # sorted by name


def test_record_three_streams_no_loss(tmp_path, uid):
    result = _record_three_streams(tmp_path, uid, 4.0)
    _assert_recording(tmp_path, uid, *result)


@pytest.mark.slow
def test_record_three_streams_15s(tmp_path, uid):
    result = _record_three_streams(tmp_path, uid, 15.0)
    _assert_recording(tmp_path, uid, *result)


def test_boundaries_and_flush(tmp_path, uid):
    src = RegularSource(f"b_{uid}", f"b_{uid}", channels=2, srate=200).start()
    rec = Recorder(
        tmp_path / "b.xdf", streams=[f"source_id='b_{uid}'"], boundary_interval=0.5
    )
    rec.start()
    time.sleep(1.6)
    on_disk = load_raw(tmp_path / "b.xdf")  # readable while recording: data flushed
    assert on_disk.streams[1].time_stamps.size > 0
    rec.stop()
    src.stop()
    from lsl_session.xdf._format import ChunkTag
    from lsl_session.xdf.reader import iter_chunks

    tags = [c.tag for c in iter_chunks(tmp_path / "b.xdf")]
    assert tags.count(ChunkTag.BOUNDARY) >= 2
    assert tags[0] == ChunkTag.FILE_HEADER and tags[1] == ChunkTag.STREAM_HEADER
    assert tags[-1] == ChunkTag.STREAM_FOOTER


def test_stream_returns_with_same_source_id(tmp_path, uid):
    src = RegularSource(f"ret_{uid}", f"ret_{uid}", channels=4, srate=250).start()
    rec = Recorder(tmp_path / "r.xdf", streams=[f"source_id='ret_{uid}'"])
    rec.start()
    time.sleep(1.5)
    src.pause()
    time.sleep(3.0)
    src.resume()
    time.sleep(3.0)
    summary = rec.stop()
    src.stop()
    streams = _load(tmp_path / "r.xdf")
    assert list(streams) == [f"ret_{uid}"]  # one stream id, continued
    assert len(summary["streams"]) == 1
    values = streams[f"ret_{uid}"]["time_series"][:, 0]
    steps = np.diff(values)
    assert np.all(steps >= 1)  # nothing duplicated or reordered
    assert (
        np.count_nonzero(steps > 1) <= 1
    )  # one gap: samples pushed while reconnecting
    paused_at = src.paused_index
    assert values.max() > paused_at + 250  # > 1 s of data after the return


@pytest.mark.parametrize("with_source_id", [True, False])
def test_late_stream_is_picked_up(tmp_path, uid, with_source_id):
    early = RegularSource(f"early_{uid}", f"early_{uid}", channels=1, srate=100).start()
    rec = Recorder(
        tmp_path / "late.xdf",
        streams=[f"source_id='early_{uid}'", f"name='late_{uid}'"],
    )
    rec.start()
    time.sleep(5.0)
    late = MarkerSource(f"late_{uid}", f"late_{uid}" if with_source_id else None, 0.1)
    late.start()
    time.sleep(2.0)
    rec.stop()
    early.stop()
    sent = late.stop()
    streams = _load(tmp_path / "late.xdf")
    assert f"late_{uid}" in streams
    got = [v[0] for v in streams[f"late_{uid}"]["time_series"]]
    assert len(got) >= 5
    assert got == [label for label, _ in sent][-len(got) :] or set(got) <= {
        label for label, _ in sent
    }


def test_new_stream_of_a_matched_broad_query_is_found_by_the_rescan(tmp_path, uid):
    """Once every query has matched, late streams come from the periodic rescan."""
    first = RegularSource(f"bb1_{uid}", f"bb_{uid}_1", channels=1, srate=100).start()
    rec = Recorder(
        tmp_path / "bb.xdf",
        streams=[f"starts-with(source_id, 'bb_{uid}_')"],
        rescan_interval=1.0,
    )
    rec.start()
    assert wait_until(lambda: rec.pool._resolver is None, timeout=5)  # rescans now
    second = RegularSource(f"bb2_{uid}", f"bb_{uid}_2", channels=1, srate=100)
    second.start()
    try:
        assert wait_until(lambda: len(rec.streams) == 2, timeout=10)
        time.sleep(0.5)
    finally:
        summary = rec.stop()
        first.stop(), second.stop()
    counts = {s["name"]: s["sample_count"] for s in summary["streams"]}
    assert counts[f"bb1_{uid}"] > 0 and counts[f"bb2_{uid}"] > 0


def test_invalid_query_and_unwritable_folder(tmp_path):
    with pytest.raises(QueryError):
        Recorder(tmp_path / "x.xdf", streams=["name='x' and ("])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rec = Recorder(blocker / "sub" / "x.xdf", streams=["name='nothing-here'"])
    with pytest.raises(RecorderError, match="cannot create"):
        rec.start()


def test_refuses_to_start_without_free_space(tmp_path):
    rec = Recorder(
        tmp_path / "x.xdf", streams=["name='nothing'"], min_free_bytes=10**18
    )
    with pytest.raises(RecorderError, match="free"):
        rec.start()
    assert not (tmp_path / "x.xdf").exists()


def test_never_overwrites_existing_file(tmp_path):
    (tmp_path / "x.xdf").write_bytes(b"precious")
    rec = Recorder(tmp_path / "x.xdf", streams=["name='nothing'"])
    with pytest.raises(RecorderError, match="cannot create"):
        rec.start()
    assert (tmp_path / "x.xdf").read_bytes() == b"precious"


def test_split_by_size_gives_complete_parts(tmp_path, uid):
    src = RegularSource(f"sp_{uid}", f"sp_{uid}", channels=32, srate=1000).start()
    rec = Recorder(
        tmp_path / "s.xdf", streams=[f"source_id='sp_{uid}'"], split_bytes=100_000
    )
    rec.start()
    time.sleep(2.5)
    summary = rec.stop()
    pushed = src.stop()
    parts = summary["xdf_files"]
    assert len(parts) >= 3
    assert parts[1] == "s_part002.xdf"
    values = []
    for name in parts:
        streams = _load(tmp_path / name)
        s = streams[f"sp_{uid}"]
        assert int(s["footer"]["info"]["sample_count"][0]) == len(s["time_stamps"])
        assert len(s["clock_times"]) >= 1
        values.append(s["time_series"][:, 0])
    allv = np.concatenate(values)
    assert np.all(np.diff(allv) == 1)
    assert len(allv) >= np.sum(pushed <= rec.stop_clock) - allv[0]


_OUTLETS_SCRIPT = """
import sys, time, pylsl
uid, n = sys.argv[1], int(sys.argv[2])
outs = [pylsl.StreamOutlet(pylsl.StreamInfo(f"{uid}_{k:02d}", "Test", 1, 0,
        pylsl.cf_float32, f"bq_{uid}_{k:02d}")) for k in range(n)]
print("ready", flush=True)
sys.stdin.read()
"""


def test_broad_query_records_all_initial_streams_in_sorted_order(tmp_path, uid):
    """32 streams in another process answer a resolve over several packets.

    The initial resolve waits for the answers to settle (on an idle machine all
    32 are there at start; before that wait, 5-12 were), so ids follow sorted
    order; a stream whose answer comes later still is recorded as a late stream.
    """
    import subprocess
    import sys

    n = 32
    proc = subprocess.Popen(
        [sys.executable, "-c", _OUTLETS_SCRIPT, uid, str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"
        rec = Recorder(
            tmp_path / "bq.xdf",
            streams=[f"starts-with(source_id, 'bq_{uid}_')"],
            initial_wait=5.0,
        )
        rec.start()
        initial = {s.name for s in rec.streams.values()}  # before late pickup
        # stragglers (slow answers under load) come in as late streams
        assert wait_until(lambda: len(rec.streams) == n, timeout=15)
        summary = rec.stop()
    finally:
        proc.communicate("", timeout=30)
    ids = {s["name"]: s["stream_id"] for s in summary["streams"]}
    assert set(ids) == {f"{uid}_{k:02d}" for k in range(n)}  # every stream recorded
    # the streams visible at start hold ids 1..m in sorted order; stragglers follow
    first = sorted(initial)
    assert [ids[name] for name in first] == list(range(1, len(first) + 1))
