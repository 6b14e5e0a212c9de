"""A stream whose data starts coming from another outlet is never silent (#23 item 4).

Real processes publish one source_id; the recorder (CLI, its own process) records
it while the outlet behind it changes: another process takes over (liblsl's
recovery re-attaches the inlet) with stamps 12 s earlier, or the same device
restarts after a pause. The event log, the metadata and the verdict must say so,
and "samples lost" must equal what the raw XDF stamps say.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyxdf
from lsl_helpers import wait_until

CHILD = Path(__file__).with_name("_session_outlets.py")
SRATE = 100.0


def _outlet(
    prefix: str, value: float, shift: float = 0.0
) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), prefix, "1", str(value), str(SRATE), str(shift)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    word, uid = proc.stdout.readline().split()
    assert word == "ready"
    return proc, uid


def _close(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def _record(root: Path, query: str, duration: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--name", "src", "--stream", query, "--duration", str(duration)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _recording(root: Path) -> bool:
    return root.exists() and any(root.glob("*/*.xdf"))


def _independent(stamps: np.ndarray) -> tuple[int, int, list[float]]:
    """Samples lost and backward jumps computed from raw stamps, nothing shared."""
    lost, backward, steps = 0, 0, []
    for a, b in itertools.pairwise(stamps):
        step = b - a
        if step < 0:
            backward += 1
            steps.append(step)
        elif step * SRATE > 1.5:
            lost += round(step * SRATE) - 1
            steps.append(step)
    return lost, backward, steps


def _session(out: str) -> tuple[Path, dict, list[dict], dict]:
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    streams, _ = pyxdf.load_xdf(
        str(folder / f"{folder.name}.xdf"),
        synchronize_clocks=False,
        dejitter_timestamps=False,
    )
    return folder, meta, events, {s["info"]["name"][0]: s for s in streams}


def _stream_meta(meta: dict, name: str) -> dict:
    runs = meta["recording"]["runs"]
    return next(s for s in runs[-1]["streams"] if s["name"] == name)


def test_takeover_by_another_outlet_is_logged_and_counted(tmp_path, uid):
    prefix = f"take_{uid}"
    name = f"{prefix}_s0"
    first, first_uid = _outlet(prefix, 1.0)
    record = _record(tmp_path, f"name='{name}'", 16)
    try:
        assert wait_until(lambda: _recording(tmp_path), timeout=60)
        time.sleep(1.0)
        # another process publishes the same source_id, stamps 12 s behind …
        second, second_uid = _outlet(prefix, 2.0, shift=-12.0)
        time.sleep(7.0)  # both seen by a rescan
        _close(first)  # … and takes over when the first vanishes
        out, err = record.communicate(timeout=240)
    finally:
        if record.poll() is None:
            record.kill()
        for proc in (first, second):
            if proc.poll() is None:
                _close(proc)
    assert record.returncode == 0, err[-3000:]
    _, meta, events, streams = _session(out)
    (change,) = [e for e in events if e["event"] == "stream_source_changed"]
    assert (change["old_uid"], change["new_uid"]) == (first_uid, second_uid)
    assert change["old_host"] and change["new_host"]
    assert change["restart"] is False and change["concurrent"] is True
    assert change["lsl_time"] > 0 and change["detected_lsl_time"] > 0
    # one XDF stream, both sources in it, in order
    values = np.asarray(streams[name]["time_series"])[:, 0]
    assert values[0] == 1.0 and values[-1] == 2.0
    stamps = np.asarray(streams[name]["time_stamps"])
    lost, backward, steps = _independent(stamps)
    # 12 s behind, less the ~2 s the recovery took
    assert backward == 1 and -12.5 < min(steps) < -8.0
    entry = _stream_meta(meta, name)
    assert entry["backward_jumps"] == backward
    assert entry["samples_lost"] == lost
    assert [s["uid"] for s in entry["sources"]] == [first_uid, second_uid]
    kinds = [d["kind"] for d in entry["discontinuities"]]
    assert kinds.count("backward") == 1
    # the verdict: the lost figure is the independent one; the jump is named
    (line,) = [ln for ln in err.splitlines() if " samples lost" in ln]
    assert f"{lost} samples lost" in line
    assert f"{name}: changed source" in err
    assert "backward jump" in err


def test_a_device_restarting_continues_its_stream_as_a_restart(tmp_path, uid):
    prefix = f"rest_{uid}"
    name = f"{prefix}_s0"
    first, first_uid = _outlet(prefix, 1.0)
    record = _record(tmp_path, f"name='{name}'", 12)
    try:
        assert wait_until(lambda: _recording(tmp_path), timeout=60)
        time.sleep(2.0)
        _close(first)
        time.sleep(2.0)  # the device is away 2 s …
        second, second_uid = _outlet(prefix, 2.0)  # … and comes back
        out, err = record.communicate(timeout=240)
    finally:
        if record.poll() is None:
            record.kill()
        for proc in (first, second):
            if proc.poll() is None:
                _close(proc)
    assert record.returncode == 0, err[-3000:]
    _, meta, events, streams = _session(out)
    assert len([n for n in streams if n.startswith(prefix)]) == 1
    (change,) = [e for e in events if e["event"] == "stream_source_changed"]
    assert change["restart"] is True
    assert (change["old_uid"], change["new_uid"]) == (first_uid, second_uid)
    stamps = np.asarray(streams[name]["time_stamps"])
    lost, backward, steps = _independent(stamps)
    assert backward == 0 and lost > 100 and max(steps) > 1.5
    entry = _stream_meta(meta, name)
    assert entry["samples_lost"] == lost
    assert change["discontinuity"]["kind"] == "gap"
    (line,) = [ln for ln in err.splitlines() if " samples lost" in ln]
    assert f"{lost} samples lost" in line
    assert f"{name}: restarted" in err
