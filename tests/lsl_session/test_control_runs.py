"""``record --control-port`` as LabRecorder: a server that stays up across runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pyxdf
from lsl_helpers import RegularSource, wait_until
from test_control import Client, _samples

from lsl_session.control import ControlServer
from lsl_session.control.finisher import SessionFinisher
from lsl_session.manager import SessionManager


def start_server(root: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """Start ``lsl-session record --control-port 0`` and return it with its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsl_session", "record", "--root", str(root),
         "--control-port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = []
    line = proc.stderr.readline()
    while line and "remote control on" not in line:
        seen.append(line)
        line = proc.stderr.readline()
    assert line, "".join(seen)
    return proc, int(line.rsplit(":", 1)[1])


def _events(folder: Path) -> list[dict]:
    return json.loads((folder / f"{folder.name}_log.json").read_text())


def _stream(folder: Path, name: str) -> dict:
    streams, _ = pyxdf.load_xdf(
        str(folder / f"{folder.name}.xdf"),
        synchronize_clocks=False,
        dejitter_timestamps=False,
    )
    return {s["info"]["name"][0]: s for s in streams}[name]


def test_three_run_psychopy_script_against_the_cli(session_root, uid):
    """PsychoPy-style: filename {participant} {session} {task} {run:N}, start,
    a block, stop, for N = 1..3, through labrecorder-controller (which never
    reads replies) and a raw socket; then ``quit``."""
    lrc = pytest.importorskip("labrecorder_controller")
    name = f"oddball_{uid}"
    src = RegularSource(name, f"odd_{uid}", channels=4, srate=200).start()
    proc, port = start_server(session_root, "--stream", f"source_id='odd_{uid}'")
    rcs = raw = None
    try:
        rcs = lrc.labrecrcs(ip="127.0.0.1", port=port)
        raw = Client(("127.0.0.1", port))
        for run in (1, 2, 3):
            rcs.filename(participant="P01", session="S01", task="oddball", run=run)
            rcs.start()
            # the block: until the run has recorded data
            assert wait_until(lambda: _samples(raw.status(), name) > 100, 20)
            if run == 2:
                # stop replies only once the file is complete (footers written)
                assert raw.send("stop") == b"OK"
                folder = Path(raw.status()["session_dir"])
                s = _stream(folder, name)
                assert int(s["footer"]["info"]["sample_count"][0]) == len(
                    s["time_stamps"]
                )
            else:
                rcs.stop()
            assert wait_until(lambda run=run: raw.status()["runs"] == run, 20)
        status = raw.status()
        assert status["state"] in ("completed", "idle")
        assert raw.send("quit") == b"OK"
        out, err = proc.communicate(timeout=120)
    finally:
        for sock in (rcs and rcs.s, raw and raw.sock):
            if sock is not None:
                sock.close()
        proc.kill()
        src.stop()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    folders = [Path(line) for line in out.splitlines()]
    assert len(folders) == 3
    last_stamp = -1.0
    for run, folder in enumerate(folders, start=1):
        assert folder.parent == session_root
        assert folder.name.startswith(f"sub-P01_ses-S01_task-oddball_run-00{run}_")
        meta = json.loads((folder / "session_metadata.json").read_text())
        assert meta["status"] == "completed"
        assert [r["status"] for r in meta["processing"]["runs"]] == ["ok"]
        assert any((folder / "processing" / "synchronized_data").glob("*.parquet"))
        kinds = [e["event"] for e in _events(folder)]
        assert kinds[:2] == ["session_start", "start_record"]
        assert kinds.count("start_record") == 1
        assert kinds[-1] == "processing_end"
        s = _stream(folder, name)
        stamps = s["time_stamps"]
        assert len(stamps) > 100
        assert int(s["footer"]["info"]["sample_count"][0]) == len(stamps)
        assert stamps[0] > last_stamp  # three separate, ordered runs
        last_stamp = stamps[-1]


def test_start_during_processing_records_at_once(session_root, uid):
    """Run 1's processing is held; run 2's start records meanwhile, and
    run 1 is reported done only when its processing ends."""
    release = threading.Event()
    processed: list[str] = []

    def held_processing(folder: Path) -> str:
        release.wait(30)
        processed.append(folder.name)
        return "completed"

    done: list[tuple[Path, str]] = []
    finisher = SessionFinisher(
        on_done=lambda f, o: done.append((f, o)), process_fn=held_processing
    )
    name = f"held_{uid}"
    src = RegularSource(name, f"held_{uid}", channels=2, srate=200).start()
    manager = SessionManager(session_root)
    srv = ControlServer(
        manager, port=0, default_streams=[f"source_id='held_{uid}'"], finisher=finisher
    ).start()
    client = Client(srv.address)
    try:
        assert client.send("filename {run:1}") == b"OK"
        assert client.send("start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 0, 20)
        assert client.send("stop") == b"OK"
        first = Path(client.status()["session_dir"])
        assert client.status()["processing"] == [str(first)]
        assert client.send("filename {run:2}") == b"OK"
        assert client.send("start") == b"OK"
        status = client.status()
        assert status["state"] == "recording"
        assert status["processing"] == [str(first)]
        assert wait_until(lambda: _samples(client.status(), name) > 0, 20)
        assert done == []
        release.set()
        assert wait_until(lambda: done == [(first, "completed")], 10)
        assert client.send("stop") == b"OK"
        assert finisher.wait(10)
    finally:
        release.set()
        client.close()
        srv.stop()
        manager.close()
        src.stop()
    second = done[1][0]
    assert [f.name[:7] for f, _ in done] == ["run-001", "run-002"]
    assert processed == [first.name, second.name]
    assert len(_stream(second, name)["time_stamps"]) > 0


def test_sigterm_ends_the_server_and_the_running_run(session_root, uid):
    name = f"term_{uid}"
    src = RegularSource(name, f"term_{uid}", channels=2, srate=100).start()
    proc, port = start_server(
        session_root, "--no-process", "--stream", f"source_id='term_{uid}'"
    )
    try:
        client = Client(("127.0.0.1", port))
        assert client.send("filename {participant:P9} {task:T} {run:4}") == b"OK"
        assert client.send("start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 0, 20)
        assert client.send("stop") == b"OK"
        assert client.status()["state"] == "completed"  # still up after stop
        assert client.send("start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 0, 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        src.stop()
    assert proc.returncode == 0, err
    first, second = (Path(line) for line in out.splitlines())
    assert first.name.startswith("sub-P9_task-T_run-004_")
    assert second.name.startswith("sub-P9_task-T_run-004_")  # same fields
    for folder in (first, second):
        meta = json.loads((folder / "session_metadata.json").read_text())
        assert meta["status"] == "completed"
        assert not meta.get("processing", {}).get("runs")
        assert len(_stream(folder, name)["time_stamps"]) > 0


def test_second_signal_stops_waiting_for_processing(session_root, uid):
    name = f"wait_{uid}"
    src = RegularSource(name, f"wait_{uid}", channels=8, srate=500).start()
    proc, port = start_server(session_root, "--stream", f"source_id='wait_{uid}'")
    try:
        client = Client(("127.0.0.1", port))
        assert client.send("start") == b"OK"
        assert wait_until(lambda: _samples(client.status(), name) > 500, 20)
        assert client.send("stop") == b"OK"  # processing starts in the background
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C, while processing runs
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        src.stop()
    assert "not waiting for processing; run `lsl-session process` on:" in err
    assert proc.returncode == 1
    assert out == ""  # the unprocessed run is not reported done
    (folder,) = [p for p in session_root.iterdir() if not p.name.startswith(".")]
    ends = [e for e in _events(folder) if e["event"] == "processing_end"]
    assert [e["status"] for e in ends] == ["interrupted"]
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "processing"  # unfinished: `list` and `recover` see it
