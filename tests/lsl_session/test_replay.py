"""``lsl-session replay``: a recording republished, recorded again by our recorder."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_processing_support import stream_xml

from lsl_session.processing import load_session
from lsl_session.replay import Player, ReplayError
from lsl_session.xdf import XdfWriter


def _recording(path: Path, uid: str, duration: float = 3.0) -> Path:
    """EEG (250 Hz float32, 10-20 labels), int16 counter (100 Hz), non-ASCII markers."""
    t0 = 1000.0
    eeg_t = t0 + np.arange(int(duration * 250)) / 250
    eeg = np.random.default_rng(0).normal(0, 20, (len(eeg_t), 4)).astype(np.float32)
    cnt_t = t0 + 0.004 + np.arange(int(duration * 100)) / 100
    cnt = (np.arange(len(cnt_t)) % 30000).astype(np.int16)[:, None]
    mk_t = t0 + np.array([0.5, 1.0, 2.5])
    labels = [("Fp1", "microvolts", "EEG"), ("Fp2", "microvolts", "EEG"),
              ("C3", "microvolts", "EEG"), ("C4", "microvolts", "EEG")]  # fmt: skip
    with XdfWriter(path) as w:
        w.write_stream_header(1, stream_xml(
            f"EEG_{uid}", "EEG", "float32", labels, 250, source_id=f"rp_eeg_{uid}",
            extra_desc="<acquisition><manufacturer>Acme</manufacturer></acquisition>",
        ))  # fmt: skip
        w.write_stream_header(2, stream_xml(
            f"Cnt_{uid}", "Misc", "int16", [("n", "", "misc")], 100,
            source_id=f"rp_cnt_{uid}",
        ))  # fmt: skip
        w.write_stream_header(3, stream_xml(
            f"Mk_{uid}", "Markers", "string", [("m", "", "Markers")], 0,
            source_id=f"rp_mk_{uid}",
        ))  # fmt: skip
        for k in range(0, len(eeg_t), 50):
            w.write_samples(1, eeg_t[k : k + 50], eeg[k : k + 50])
        w.write_samples(2, cnt_t, cnt)
        w.write_samples(3, mk_t, [["début é"], ["日本"], ["end"]])
        for sid in (1, 2, 3):
            w.write_clock_offset(sid, t0, 0.0)
            w.write_clock_offset(sid, t0 + duration, 0.0)
        w.write_stream_footers()
    return path


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lsl_session", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def test_recording_the_replay_gives_back_the_same_samples(tmp_path, uid):
    src = _recording(tmp_path / "src.xdf", uid)
    root = tmp_path / "rec"
    replay = _cli("replay", str(src), "--wait-for-consumers", "30")
    time.sleep(0.5)  # the outlets appear before the recorder looks for them
    rec = _cli(
        "record", "--root", str(root), "--name", "replayed", "--no-process",
        "--stream", f"source_id='rp_eeg_{uid}'", "--stream", f"source_id='rp_cnt_{uid}'",
        "--stream", f"source_id='rp_mk_{uid}'",
    )  # fmt: skip
    try:
        out, err = replay.communicate(timeout=60)
        assert replay.returncode == 0, err
        assert f"EEG_{uid}: 750 samples sent" in out
    finally:
        time.sleep(0.5)
        rec.send_signal(signal.SIGINT)
        rec_out, rec_err = rec.communicate(timeout=60)
    assert rec.returncode == 0, rec_err
    folder = Path(rec_out.strip().splitlines()[-1])
    original, again = load_session(src), load_session(folder)
    for s in original.streams:
        r = again.stream(s.name)
        assert (r.type, r.source_id, r.channel_format) == (
            s.type,
            s.source_id,
            s.channel_format,
        )
        assert r.channel_labels == s.channel_labels
        assert r.channel_units == s.channel_units
        assert r.nominal_srate == s.nominal_srate
        if s.is_string:
            assert r.time_series == s.time_series
        else:
            assert r.time_series.dtype == s.time_series.dtype
            assert np.array_equal(r.time_series, s.time_series)
        assert len(r.time_stamps) == len(s.time_stamps)
        shift = r.time_stamps - s.time_stamps
        # same timing: one constant shift for every sample of every stream
        assert np.ptp(shift) < 2e-3, s.name
    shifts = [
        np.median(again.stream(s.name).time_stamps - s.time_stamps)
        for s in original.streams
    ]
    assert np.ptp(shifts) < 2e-3
    eeg = again.stream(f"EEG_{uid}")
    assert eeg.info["desc"]["acquisition"][0]["manufacturer"] == ["Acme"]
    assert again.to_mne(streams=[f"EEG_{uid}"]).ch_names == ["Fp1", "Fp2", "C3", "C4"]


def test_speed_loop_and_stream_query_in_process(tmp_path, uid):
    import pylsl

    src = _recording(tmp_path / "src.xdf", uid, duration=1.0)
    with pytest.raises(ReplayError, match="no stream"):
        Player(src, queries=["name='nope'"])
    with pytest.raises(ReplayError, match="speed"):
        Player(src, speed=0)
    player = Player(src, speed=4.0, loop=True, queries=["type='Misc'"])
    assert [s.name for s in player.streams] == [f"Cnt_{uid}"]
    (info,) = pylsl.resolve_bypred(f"source_id='rp_cnt_{uid}'", 1, 5.0)
    inlet = pylsl.StreamInlet(info)
    inlet.open_stream(5.0)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(player.run()))
    thread.start()
    got_v, got_t = [], []
    deadline = time.monotonic() + 10
    while len(got_v) < 250 and time.monotonic() < deadline:
        values, stamps = inlet.pull_chunk(timeout=0.2)
        got_v += values
        got_t += stamps
    player.stop()
    thread.join(5)
    player.close(linger=0)
    values = np.asarray(got_v)[:250, 0]
    stamps = np.asarray(got_t)[:250]
    # the loop repeats the 100 samples; at 4x the 10-ms spacing is 2.5 ms
    assert np.array_equal(values, np.tile(np.arange(100), 3)[:250])
    assert np.allclose(np.diff(stamps), 0.0025, atol=1e-6)
    assert result[f"Cnt_{uid}"] >= 250


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--speed", "-1"], "speed"), (["--stream", "name='x"], "invalid stream query"),
     (["--stream", "name='nope'"], "no stream")],
    ids=["speed", "bad-query", "no-match"],
)  # fmt: skip
def test_replay_bad_options_one_line_error(tmp_path, uid, args, message):
    from click.testing import CliRunner

    from lsl_session.cli import main

    src = _recording(tmp_path / "src.xdf", uid, duration=0.5)
    result = CliRunner().invoke(main, ["replay", str(src), *args])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    (error,) = [x for x in result.output.splitlines() if x.startswith("Error:")]
    assert message in error


def test_replay_not_an_xdf_file(tmp_path):
    bad = tmp_path / "x.xdf"
    bad.write_bytes(b"PK\x03\x04 not xdf")
    proc = subprocess.run(
        [sys.executable, "-m", "lsl_session", "replay", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert len([x for x in proc.stderr.splitlines() if x.startswith("Error:")]) == 1
    assert "Traceback" not in proc.stderr
