"""No silent empty recordings (issue #13 item 4): typos are named, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsl_helpers import RegularSource, wait_until
from test_control import Client
from test_control_runs import start_server

from lsl_session.control import ControlServer
from lsl_session.lsl import (
    closest_streams,
    edit_distance,
    explain_unmatched,
    query_hints,
)
from lsl_session.manager import SessionManager


def _record(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--no-process", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _errors(folder: Path) -> list[dict]:
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    return [e for e in events if e["event"] == "error"]


def test_edit_distance_and_hints():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert query_hints('nme="EEG"') == ["unknown field 'nme' (did you mean name?)"]
    assert query_hints("name=EEG") == ["unquoted value 'EEG': write name=\"EEG\""]
    assert query_hints("channel_count=8 and type='EEG'") == []
    visible = [
        {"name": n, "type": t, "source_id": i, "hostname": "h"}
        for n, t, i in [("Markers", "Markers", "m1"), ("EEG", "EEG", "e1"),
                        ("Audio", "Audio", "a1")]
    ]  # fmt: skip
    assert [r["name"] for r in closest_streams('name="eeg"', visible, 2)] == [
        "EEG",
        "Audio",
    ]
    assert closest_streams("source_id='m2'", visible, 1)[0]["name"] == "Markers"


@pytest.mark.parametrize(
    ("query", "hint"),
    [
        ('nme="EEG"', "unknown field 'nme' (did you mean name?)"),
        ("name=EEG", "unquoted value 'EEG': write name=\"EEG\""),
        ('name="eeg"', "values are case-sensitive: 'EEG', not 'eeg'"),
    ],
)
def test_explain_unmatched_typos(query, hint):
    visible = [
        {"name": "Markers", "type": "Markers", "source_id": "m1", "hostname": "h"},
        {"name": "EEG", "type": "EEG", "source_id": "e1", "hostname": "h"},
    ]
    text = explain_unmatched(query, visible)
    assert text.startswith(f"query {query!r} matched no stream; ")
    assert hint in text
    assert "closest visible: EEG (type EEG, source_id e1, host h); Markers" in text
    assert explain_unmatched(query, []).endswith("no LSL stream is visible at all")


def test_query_typo_names_closest_stream_and_exits_2(session_root, uid):
    """The CLI end to end, with the issue's first typo (the others: above).

    As LabRecorderCLI creates no file, a query that matches nothing before the
    start creates no session folder.
    """
    name = f"EEG_{uid}"
    src = RegularSource(name, f"eeg_{uid}", channels=2, srate=100).start()
    query = f'nme="{name}"'
    hint = "unknown field 'nme' (did you mean name?)"
    try:
        proc = _record(session_root, "--stream", query, "--duration", "1.5")
    finally:
        src.stop()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    (warning,) = [ln for ln in lines if "matched no stream" in ln]
    assert warning.startswith(f"Error: query {query!r} matched no stream")
    assert hint in warning
    assert f"closest visible: {name} (type EEG, source_id eeg_{uid}" in warning
    assert "no session created" in proc.stderr
    assert proc.stdout == ""
    assert list(session_root.iterdir()) == []
    assert "Traceback" not in proc.stderr


def test_unmatched_query_with_allow_missing_records_and_ends_empty(session_root, uid):
    query = f'name="NoSuch_{uid}"'
    proc = _record(session_root, "--stream", query, "--duration", "1.5",
                   "--allow-missing")  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # the query never matched
    lines = proc.stderr.splitlines()
    assert any(
        ln.startswith(f"Error: query {query!r} never matched any stream")
        for ln in lines
    )
    folder = Path(proc.stdout.splitlines()[-1])
    (error,) = _errors(folder)
    assert error["category"] == "session"
    assert error["query"] == query
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["recording"]["runs"][-1]["unmatched_queries"] == [query]
    assert meta["status"] == "empty"  # nothing recorded: not "completed"
    assert "the session ended empty" in proc.stderr


def test_record_without_queries_names_what_it_records(session_root, uid):
    name = f"ALL_{uid}"
    src = RegularSource(name, f"all_{uid}", channels=2, srate=100).start()
    try:
        proc = _record(session_root, "--duration", "1.5")
    finally:
        src.stop()
    assert proc.returncode == 0, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if "recording every visible" in ln]
    assert len(said) == 2  # at start and in the summary
    for line in said:
        assert line.startswith("no stream selected: recording every visible stream")
        assert f"{name} (type EEG, source_id all_{uid}" in line
    assert not _errors(Path(proc.stdout.splitlines()[-1]))


def test_remote_select_without_match_shows_in_status(session_root, uid):
    manager = SessionManager(session_root)
    srv = ControlServer(manager, port=0, process=False).start()
    client = Client(srv.address)
    query = f'name="late_{uid}"'
    src = None
    try:
        assert client.send(f"select {query}") == b"OK"
        assert client.status()["unmatched_selection"] == [query]
        src = RegularSource(f"late_{uid}", f"late_{uid}", channels=1, srate=50)
        src.start()
        assert wait_until(lambda: client.status()["unmatched_selection"] == [], 10)
        visible = {v["source_id"]: v for v in client.status()["visible"]}
        assert visible[f"late_{uid}"]["channel_format"] == "float32"
    finally:
        client.close()
        srv.stop()
        manager.close()
        if src is not None:
            src.stop()


def test_remote_run_with_unmatched_query_logs_error_and_exits_2(session_root, uid):
    query = f"source_id='never_{uid}'"
    proc, port = start_server(session_root, "--no-process", "--stream", query)
    try:
        client = Client(("127.0.0.1", port))
        assert client.send("start") == b"OK"
        assert client.status()["unmatched_selection"] == [query]
        assert client.send("stop") == b"OK"
        assert client.send("quit") == b"OK"
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    folder = Path(out.splitlines()[-1])
    assert [e["query"] for e in _errors(folder)] == [query]
