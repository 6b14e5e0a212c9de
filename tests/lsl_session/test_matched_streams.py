"""Say what was matched (#23 item 6): every matched stream with its host, at start
and in the summary; a name published by several hosts is flagged, at start and in
``streams``. The second host is a stream answering discovery from "dead-rig".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lsl_helpers import RegularSource

from lsl_session.rig import this_host

DEAD = Path(__file__).with_name("_dead_outlets.py")
CLI = [sys.executable, "-m", "lsl_session"]


def _dead(prefix: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(DEAD), prefix, "EEG", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_matched_streams_named_with_hosts_and_shared_names_flagged(tmp_path, uid):
    name = f"dup_{uid}_0"
    own = RegularSource(name, f"own_{uid}", channels=1, srate=50).start()
    dead = _dead(f"dup_{uid}")  # publishes dup_<uid>_0 from host dead-rig
    try:
        listed = subprocess.run(
            [*CLI, "streams", f"name='{name}'", "--wait", "3"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        record = subprocess.run(
            [*CLI, "record", "--root", str(tmp_path), "--stream", f"name='{name}'",
             "--duration", "3", "--no-process"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        own.stop()
        dead.stdin.close()
        dead.wait(timeout=30)
    host = this_host()
    assert listed.returncode == 0, listed.stderr
    assert f"stream name '{name}' comes from 2 hosts (dead-rig, {host})" in (
        listed.stderr
    )
    assert record.returncode == 0, record.stderr[-3000:]
    err = record.stderr
    start = err[err.index("matched 1 stream(s):") :]
    assert f"{name} (type EEG, source_id own_{uid}, host {host})" in start
    assert f"stream name '{name}' comes from 2 hosts (dead-rig, {host})" in start
    assert f"  {name} (host {host}): " in err  # the summary
