"""``lsl-session streams``: the visible streams as a table or JSON (issue #13 item 3)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pylsl
from lsl_helpers import RegularSource

from lsl_session.cli.streams import format_table


def _streams(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", "streams", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_format_table_aligns_columns():
    table = format_table(
        [
            {"name": "EEG", "type": "EEG", "source_id": "e1", "hostname": "lab",
             "channel_count": 8, "nominal_srate": 500.0, "channel_format": "float32"},
            {"name": "Markers", "type": "Markers", "source_id": "", "hostname": "lab",
             "channel_count": 1, "nominal_srate": 0.0, "channel_format": "string"},
        ]
    )  # fmt: skip
    assert table.splitlines() == [
        "name     type     source_id  host  channels  rate       format",
        "EEG      EEG      e1         lab   8         500        float32",
        "Markers  Markers  -          lab   1         irregular  string",
    ]


def test_streams_json_table_and_query(uid):
    a = RegularSource(f"SA_{uid}", f"sa_{uid}", channels=3, srate=250).start()
    b = RegularSource(f"SB_{uid}", f"sb_{uid}", channels=1, srate=10, stype="Misc")
    b.start()
    try:
        everything = _streams("--json", "--wait", "5")
        only_b = _streams(f"source_id='sb_{uid}'", "--json", "--wait", "5")
        table = _streams(f"type='EEG' and source_id='sa_{uid}'", "--wait", "5")
    finally:
        a.stop()
        b.stop()
    assert everything.returncode == 0, everything.stderr
    records = {r["source_id"]: r for r in json.loads(everything.stdout)}
    assert records[f"sa_{uid}"] == {
        "name": f"SA_{uid}", "type": "EEG", "source_id": f"sa_{uid}",
        "hostname": records[f"sa_{uid}"]["hostname"], "channel_count": 3,
        "nominal_srate": 250.0, "channel_format": "float32",
        "uid": records[f"sa_{uid}"]["uid"],
    }  # fmt: skip
    assert records[f"sa_{uid}"]["hostname"]
    assert records[f"sb_{uid}"]["type"] == "Misc"
    assert [r["source_id"] for r in json.loads(only_b.stdout)] == [f"sb_{uid}"]
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "name", "type", "source_id", "host", "channels", "rate", "format"
    ]  # fmt: skip
    assert len(lines) == 2
    assert lines[1].split()[:3] == [f"SA_{uid}", "EEG", f"sa_{uid}"]


def test_streams_wait_sees_a_stream_that_appears_late(uid):
    outlets = []
    timer = threading.Timer(
        1.5,
        lambda: outlets.append(
            pylsl.StreamOutlet(
                pylsl.StreamInfo(f"LATE_{uid}", "EEG", 1, 10, "float32", f"late_{uid}")
            )
        ),
    )
    timer.start()
    try:
        proc = _streams(f"source_id='late_{uid}'", "--wait", "20", "--json")
    finally:
        timer.cancel()
        outlets.clear()
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)] == [f"LATE_{uid}"]


def test_streams_unmatched_query_exits_2_with_closest(uid):
    src = RegularSource(f"Close_{uid}", f"close_{uid}", channels=1, srate=10).start()
    try:
        proc = _streams(f'name="close_{uid}"', "--wait", "1")
    finally:
        src.stop()
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert f"closest visible: Close_{uid} (type EEG" in line
    assert "case-sensitive" in line


def test_streams_invalid_query_is_one_line_error():
    proc = _streams("name='x' and (", "--wait", "0")
    assert proc.returncode == 1
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")] == [
        "Error: invalid stream query \"name='x' and (\": unbalanced parentheses or quotes"
    ]
