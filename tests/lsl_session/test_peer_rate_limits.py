"""Memory set by a peer's advertised rate is bounded (issue #31).

A real outlet in another process advertises an implausible rate; ``record`` (a
subprocess) refuses it with a logged reason before liblsl allocates anything, and
records the honest stream beside it. ``replay`` refuses such a file in one line,
and loops a file shorter than a tick without spinning.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest
import pyxdf

from lsl_session import limits
from lsl_session.recorder.discovery import (
    MAX_BUFFER_SAMPLES,
    MAX_BUFFER_VALUES,
    inlet_buffer_seconds,
)
from lsl_session.replay import MAX_WRAPS_PER_TICK, TICK_S
from lsl_session.xdf.writer import (
    encode_file_header,
    encode_samples,
    encode_stream_footer,
    encode_stream_header,
)

logger = logging.getLogger(__name__)
HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "lsl_session"]


def _peak_rss_mb(proc: subprocess.Popen) -> float:
    peak = 0
    while proc.poll() is None:
        try:
            text = Path(f"/proc/{proc.pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            break
        match = re.search(r"VmHWM:\s+(\d+) kB", text)
        if match:
            peak = max(peak, int(match.group(1)))
        time.sleep(0.1)
    return peak / 1024


def _record_beside_a_bomb(session_root: Path, uid: str, rate: float, channels: int):
    bomb_name, honest = f"bomb_{uid}", f"honest_{uid}"
    bomb = subprocess.Popen(
        [sys.executable, str(HERE / "_rate_bomb_child.py"), bomb_name, str(rate),
         str(channels)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    outlet = subprocess.Popen(
        [sys.executable, str(HERE / "_outlet_child.py"), honest, "100"]
    )
    try:
        assert bomb.stdout.readline().strip() == "ready"
        record = subprocess.Popen(
            [*CLI, "record", "--root", str(session_root), "--stream",
             f"name='{bomb_name}'", "--stream", f"name='{honest}'", "--duration", "6",
             "--no-process"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        peak = _peak_rss_mb(record)
        out, err = record.communicate(timeout=120)
        logger.warning(
            "peer at %g Hz x %d ch: record peaked at %.0f MB", rate, channels, peak
        )
    finally:
        bomb.kill()
        outlet.kill()
        bomb.wait()
        outlet.wait()
    return record.returncode, out, err, peak, honest


def _check_refused(code, out, err, peak, honest, reason):
    assert "Traceback" not in err
    assert re.search(rf"stream 'bomb_\w+' not recorded: {reason}", err), err
    # the refused query is named, with LabRecorderCLI's exit code for it
    assert code == 2, err
    assert "never matched" in err
    # bounded: nothing near the hundreds of MB liblsl would preallocate
    assert peak < 300, f"record peaked at {peak:.0f} MB"
    folder = Path(out.strip().splitlines()[-1])
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    (stream,) = [s for s in streams if s["info"]["name"][0] == honest]
    assert len(stream["time_stamps"]) > 300  # the honest stream went on
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "completed" and "owner" not in meta


def test_record_refuses_a_peer_advertising_1e6_hz(session_root, uid):
    result = _record_beside_a_bomb(session_root, uid, 1e6, 1)
    _check_refused(*result, reason=r"nominal rate 1e\+06 Hz is above the largest")


def test_record_refuses_channels_times_rate(session_root, uid):
    # 2000 channels x 12 kHz = 2.4e7 values/s > 2e7
    result = _record_beside_a_bomb(session_root, uid, 12_000, 2000)
    _check_refused(*result, reason=r"2000 channels x 12000 Hz")


@pytest.mark.slow
def test_record_refuses_a_peer_advertising_1e8_hz(session_root, uid):
    """The issue's figure: 1e8 Hz took the recorder from 52 MB to 2,481 MB."""
    result = _record_beside_a_bomb(session_root, uid, 1e8, 1)
    _check_refused(*result, reason=r"nominal rate 1e\+08 Hz is above the largest")


@pytest.mark.parametrize(
    ("rate", "channels"),
    [(1.0, 1), (500.0, 64), (30_000.0, 384), (200_000.0, 1), (200_000.0, 100),
     (10_000.0, 1024), (2048.0, 65_536)],
)  # fmt: skip
def test_inlet_buffer_is_bounded(rate, channels):
    info = pylsl.StreamInfo("b", "EEG", channels, rate, pylsl.cf_float32, "b")
    seconds = inlet_buffer_seconds(info)
    assert 1 <= seconds <= 360
    if limits.stream_refusal(rate, channels) is None:
        assert seconds * rate <= MAX_BUFFER_SAMPLES
        assert seconds * rate * channels <= max(MAX_BUFFER_VALUES, rate * channels)


def test_stream_refusal_limits():
    assert limits.stream_refusal(limits.MAX_NOMINAL_SRATE, 1) is None
    assert "above the largest" in limits.stream_refusal(
        limits.MAX_NOMINAL_SRATE * 1.01, 1
    )
    assert "values/s" in limits.stream_refusal(10_000.0, 2001)
    assert limits.stream_refusal(10_000.0, 2000) is None
    assert "channels" in limits.stream_refusal(0.0, limits.MAX_PEER_CHANNELS + 1)
    assert "not a rate" in limits.stream_refusal(float("nan"), 1)
    assert "not a rate" in limits.stream_refusal(-1.0, 1)


def _one_sample_xdf(path: Path, rate: float, name: str) -> Path:
    xml = (
        f'<?xml version="1.0"?><info><name>{name}</name><type>EEG</type>'
        f"<channel_count>1</channel_count><nominal_srate>{rate}</nominal_srate>"
        "<channel_format>float32</channel_format><source_id>r1</source_id></info>"
    )
    path.write_bytes(
        encode_file_header()
        + encode_stream_header(1, xml)
        + encode_samples(1, [5.0], np.ones((1, 1), np.float32), "float32")
        + encode_stream_footer(1, 5.0, 5.0, 1)
    )
    return path


def _rusage_run(args: list[str], *, interrupt_after: float | None = None) -> dict:
    """Run ``args`` from a wrapper that reports its child's max RSS and CPU time."""
    wrapper = (
        "import json, resource, signal, subprocess, sys, time\n"
        "p = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE,"
        " stderr=subprocess.PIPE, text=True)\n"
        "t = float(sys.argv[1])\n"
        "started = time.monotonic()\n"
        "if t > 0:\n"
        "    time.sleep(t); p.send_signal(signal.SIGINT)\n"
        "out, err = p.communicate(timeout=120)\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'code': p.returncode, 'out': out, 'err': err,"
        " 'rss_mb': r.ru_maxrss / 1024, 'cpu_s': r.ru_utime + r.ru_stime,"
        " 'wall_s': time.monotonic() - started}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, str(interrupt_after or 0), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_replay_refuses_1e9_hz_in_one_line(tmp_path, uid):
    path = _one_sample_xdf(tmp_path / "fast.xdf", 1e9, f"R_{uid}")
    result = _rusage_run([*CLI, "replay", "--loop", str(path)])
    assert result["code"] == 1, result["err"]
    lines = [
        line for line in result["err"].splitlines() if not re.match(r"^\d{4}-|^$", line)
    ]
    assert lines == [
        f"Error: {path}: stream 'R_{uid}': nominal rate 1e+09 Hz is above the"
        " largest accepted (200000 Hz)"
    ], result["err"]
    assert result["rss_mb"] < 400  # was 3.7 GB before the outlet existed


def test_replay_loop_of_a_one_sample_file_sleeps(tmp_path, uid):
    path = _one_sample_xdf(tmp_path / "short.xdf", 200_000.0, f"L_{uid}")
    result = _rusage_run([*CLI, "replay", "--loop", str(path)], interrupt_after=5.0)
    assert result["code"] == 0, result["err"]
    assert "Traceback" not in result["err"]
    assert "skipping cycles" in result["err"]
    sent = int(re.search(rf"L_{uid}: (\d+) samples sent", result["out"]).group(1))
    # at most MAX_WRAPS_PER_TICK one-sample cycles per tick, however long it ran
    assert 0 < sent <= result["wall_s"] / TICK_S * MAX_WRAPS_PER_TICK
    assert result["rss_mb"] < 400


def test_replay_sigint_ends_it(tmp_path, uid):
    path = _one_sample_xdf(tmp_path / "s.xdf", 100.0, f"S_{uid}")
    proc = subprocess.Popen(
        [*CLI, "replay", "--loop", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = proc.stderr.readline()  # the handlers are installed right after
    while first and "replaying" not in first:
        first = proc.stderr.readline()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, first + err
    assert f"S_{uid}:" in out
