"""The real lab from its config, as a lab runs it: ``lsl-session record --config``
in its own process, two phone simulators as separate processes against the real
relay, the Shimmer3 emulator's pty as the config's ``port`` (real pyshimmer +
pyserial), a video file as the webcam."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyxdf

from outlets.shimmer import ShimmerEmulator
from outlets.webcam import SyntheticVideo

CLI = [sys.executable, "-m", "lsl_session"]
VIDEO_FRAMES = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _video(path: Path) -> Path:
    video = SyntheticVideo(fps=30.0, flash_every=1.0, flash_frames=2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0,
                             (video.width, video.height))  # fmt: skip
    for frame in video.frames(VIDEO_FRAMES):
        writer.write(frame)
    writer.release()
    return path


def _phone(port: int, device: str, token: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*CLI, "outlet", "phone-sim", "--relay", f"127.0.0.1:{port}",
         "--device-id", device, "--token", token, "--jitter-ms", "5",
         "--clock-offset", "500", "--drift-ppm", "20"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc


def _wait_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if text in proc.stderr.readline():
            return
    raise AssertionError(f"no {text!r} from {proc.args[3:6]}")


@pytest.fixture
def emulator():
    emu = ShimmerEmulator(rate=128.0, clock_offset=5.0, drift_ppm=30.0, seed=2).start()
    yield emu
    emu.close()


def test_record_config_runs_the_real_lab(tmp_path, emulator):
    port = _free_port()
    tag = os.getpid()
    phones = {f"pa_{tag}": "tok-a", f"pb_{tag}": "tok-b"}
    devices = "".join(
        f'[[devices]]\nid = "{d}"\ntype = "android_phone"\ntoken = "{t}"\n'
        'required = true\ncapabilities = ["rgb_video", "thermal_video", "gsr_data",'
        ' "motion_data"]\n\n'
        for d, t in phones.items()
    )
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nname = "lab"\nroot = "rec"\n\n'
        "[record]\nwait_s = 30\nupload_timeout_s = 30\n\n"
        f'[relay]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'{devices}[[devices]]\nid = "shimmer_{tag}"\ntype = "shimmer_gsr"\n'
        f'port = "{emulator.port}"\nrequired = true\n\n'
        f'[[devices]]\nid = "webcam_7"\ntype = "pc_webcam"\n'
        f'file = "{_video(tmp_path / "trial.mp4")}"\n'
    )
    record = subprocess.Popen(
        [*CLI, "record", "--config", str(config), "--duration", "6",
         "--status-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sims = []
    try:
        _wait_line(record, "phone relay listening")
        sims = [_phone(port, d, t) for d, t in phones.items()]
        _wait_line(record, "recording into")
        time.sleep(2.0)
        sims[1].send_signal(signal.SIGKILL)  # a phone drops mid-recording …
        sims[1].wait(10)
        time.sleep(0.5)
        sims[1] = _phone(port, *list(phones.items())[1])  # … and comes back
        out, err = record.communicate(timeout=180)
    finally:
        for sim in sims:
            sim.terminate()
            sim.wait(30)
        if record.poll() is None:
            record.kill()
    assert record.returncode == 0, err[-4000:]
    assert "streaming" in err  # the device table
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    assert meta["status"] == "completed"

    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    by_name = {s["info"]["name"][0]: s for s in streams}
    span = float(meta["recording"]["stop_lsl_time"]) - float(
        meta["recording"]["start_lsl_time"]
    )
    for device in phones:
        for kind, rate in (("motion", 100), ("gsr", 128), ("rgb_frames", 30)):
            ts = by_name[f"{device}_{kind}"]["time_stamps"]
            covered = ts[-1] - ts[0]  # from the phone's first sample (before start)
            assert covered > 0.9 * span, (device, kind, covered, span)
            assert np.all(np.diff(ts) > 0)  # no duplicates, in order
            # the dropped phone's new process did not sample while it was away
            low = 0.8 if device == next(iter(phones)) else 0.3
            assert low * rate * covered < len(ts) < 1.2 * rate * covered
    # the webcam file is recorded from its first frame to its last
    frames = by_name["webcam_7_frames"]["time_series"][:, 0]
    assert list(frames) == list(range(VIDEO_FRAMES))
    # the Shimmer from its first packet on (held until the recorder attached)
    gsr = by_name[f"shimmer_{tag}"]
    first_sent = emulator.truth()["lsl_time"][0]
    assert abs(gsr["time_stamps"][0] - first_sent) < 0.05
    assert 0.9 * 128 * span < len(gsr["time_stamps"])

    def acks(command: str) -> dict[str, str]:
        return {
            e["device_id"]: e["status"]
            for e in events
            if e["event"] == "device_ack" and e.get("command") == command
        }

    assert acks("start_record") == dict.fromkeys(phones, "ok")
    assert acks("stop_record") == dict.fromkeys(phones, "ok")
    stop = next(e["lsl_time"] for e in events if e["event"] == "stop_record")
    dropped = [
        e
        for e in events
        if e["event"] == "device_disconnected" and e["lsl_time"] < stop
    ]
    assert [e["device_id"] for e in dropped] == [list(phones)[1]]  # logged, once
    back = [
        e
        for e in events
        if e["event"] == "device_connected" and e.get("device_id") == list(phones)[1]
    ]
    assert back[-1]["reconnect"] is True  # the same streams continued
    assert len([s for s in streams if s["info"]["name"][0].startswith(
        f"{list(phones)[1]}_motion")]) == 1  # fmt: skip
    for device in phones:
        files = meta["files"][device]
        assert sorted(f["file_type"] for f in files) == ["rgb", "thermal"]
        for f in files:
            data = (folder / f["file_path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f["sha256"]
    assert not [e for e in events if e["event"] == "error"]
    # statuses: every device ended with the recording; the dropped phone's
    # reconnect is counted once
    devices = meta["devices"]
    assert {d: devices[d]["status"] for d in devices} == dict.fromkeys(
        devices, "stopped"
    )
    assert devices[list(phones)[1]]["restarts"] == 1
    assert devices[next(iter(phones))]["restarts"] == 0
    assert devices[f"shimmer_{tag}"]["restarts"] == 0
    report = json.loads((folder / "processing/sync_check/sync_check.json").read_text())
    assert {r["device"] for r in report["streams"]} >= set(phones)
    assert any((folder / "exports" / "csv").iterdir())
    assert (folder / "processing" / "synchronized_data").is_dir()


def test_missing_required_device_is_named_and_exits_2(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nroot = "rec"\n[record]\nwait_s = 1\nprocess = false\n'
        f'[relay]\nhost = "127.0.0.1"\nport = {_free_port()}\n'
        f'[markers]\nname = "M_{os.getpid()}"\nstdin = true\n'
        '[[devices]]\nid = "absent_phone"\ntype = "android_phone"\ntoken = "t"\n'
        "required = true\n"
    )
    args = [*CLI, "record", "--config", str(config), "--duration", "1"]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=120, input="block_1\nblock 2\n"
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "required device(s) not streaming after 1 s: absent_phone" in proc.stderr
    folder = Path(proc.stdout.strip().splitlines()[-1])
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    errors = [e for e in events if e["event"] == "error"]
    assert any("absent_phone" in e["message"] for e in errors)
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    markers = next(s for s in streams if s["info"]["name"][0] == f"M_{os.getpid()}")
    # the others are recorded: here the markers typed on stdin, from the first one
    assert [m[0] for m in markers["time_series"]] == ["block_1", "block 2"]
    proc = subprocess.run(
        [*args, "--allow-missing"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the device status is true everywhere: metadata, dashboard, verdict, report
    from lsl_session.dashboard.state import event_sentence
    from lsl_session.report.verdict import device_status_text, session_verdict

    meta = json.loads((folder / "session_metadata.json").read_text())
    absent = meta["devices"]["absent_phone"]
    assert absent["status"] == "missing" and "connected_time" not in absent
    assert device_status_text(absent) == "missing (never connected)"
    sentence = event_sentence(next(e for e in errors if "absent_phone" in e["message"]))
    assert sentence == (
        "error: required device(s) not streaming after 1 s: absent_phone"
    )  # a sentence on the dashboard, not raw JSON
    done = subprocess.run(
        [*CLI, "process", str(folder)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((folder / "processing" / "verdict.json").read_text())
    assert "1 devices missing" in saved["verdict"]
    assert "absent_phone: missing (never connected)" in saved["notes"]
    page = (folder / "processing" / "report.html").read_text()
    assert "<td>missing (never connected)</td>" in page
    # made true on purpose: the same session with the phone connected says nothing
    meta["devices"]["absent_phone"]["status"] = "stopped"
    healthy = session_verdict([], None, devices=meta["devices"])
    assert "missing" not in healthy.line


def test_ctrl_c_during_the_device_wait_ends_the_session_empty(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nroot = "rec"\n[record]\nwait_s = 120\n'
        f'[relay]\nhost = "127.0.0.1"\nport = {_free_port()}\n'
        '[[devices]]\nid = "absent_phone"\ntype = "android_phone"\ntoken = "t"\n'
        "required = true\n"
    )
    proc = subprocess.Popen(
        [*CLI, "record", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_line(proc, "session ")
        time.sleep(1.0)  # inside the 120 s wait for the required phone
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "Traceback" not in err, err[-3000:]
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "empty", meta["status"]  # not "completed"
    assert "the session ended empty" in out
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    end = next(e for e in events if e["event"] == "session_end")
    assert end["empty"] is True
    assert not (folder / "processing" / "report.html").exists()


# the injected byte kills pyshimmer's reader thread on purpose
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_shimmer_drop_is_logged_and_its_reconnect_continues_the_stream(
    tmp_path, emulator
):
    import threading

    from lsl_helpers import wait_until

    from lsl_session.config import load_config
    from lsl_session.lab import LabOptions, LabRun
    from lsl_session.signals import StopRequest

    tag = os.getpid()
    path = tmp_path / "lab.toml"
    path.write_text(
        '[session]\nroot = "rec"\n[record]\nprocess = false\n'
        f'[[devices]]\nid = "shimmer_d{tag}"\ntype = "shimmer_gsr"\n'
        f'port = "{emulator.port}"\nrequired = true\n'
    )
    lines: list[str] = []
    # live=True: the updating rich table a terminal shows (here on stderr)
    options = LabOptions(duration=6.0, live=True)
    lab = LabRun(load_config(path), options, say=lines.append)
    result = {}
    runner = threading.Thread(target=lambda: result.update(r=lab.run(StopRequest())))
    runner.start()
    assert wait_until(lambda: any("recording into" in ln for ln in lines), 30)
    time.sleep(1.0)
    emulator.inject_status(ack_prefix=True)  # pyshimmer's reader dies: a drop
    runner.join(60)
    folder = result["r"].folder
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    mine = [
        (e["event"], e.get("reconnect"))
        for e in events
        if e.get("device_id") == f"shimmer_d{tag}"
        and e["event"] in ("device_connected", "device_disconnected")
    ]
    assert mine == [("device_disconnected", None), ("device_connected", True)]
    assert any("disconnected" in ln for ln in lines)  # shown, not only logged
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    gsr = [s for s in streams if s["info"]["name"][0] == f"shimmer_d{tag}"]
    assert len(gsr) == 1  # one stream across the reconnect
    meta = json.loads((folder / "session_metadata.json").read_text())
    stop = float(meta["recording"]["stop_lsl_time"])
    assert stop - gsr[0]["time_stamps"][-1] < 1.0  # it streams again after the drop
    shimmer = meta["devices"][f"shimmer_d{tag}"]
    assert shimmer["restarts"] == 1  # the drop and its reconnect, counted
    assert shimmer["status"] == "stopped"  # ended with the recording, not dropped


def test_a_device_that_cannot_start_is_named_and_exits_2(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text(
        '[session]\nroot = "rec"\n[record]\nprocess = false\n'
        f'[[devices]]\nid = "shimmer_t{os.getpid()}"\ntype = "shimmer_gsr"\n'
        'port = "/dev/rfcom0"\n'  # the typo: rfcom0 for rfcomm0
    )
    proc = subprocess.run(
        [*CLI, "record", "--config", str(config), "--duration", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "did not start" in proc.stderr and "/dev/rfcom0" in proc.stderr
    assert "never matched any stream" in proc.stderr
    folder = Path(proc.stdout.strip().splitlines()[-1])
    events = json.loads((folder / f"{folder.name}_log.json").read_text())
    assert any(e["event"] == "error" and "/dev/rfcom0" in e["message"] for e in events)


def test_remote_stop_ends_a_lab_run(tmp_path):
    """`record --config --control-port`: status answers, a remote stop ends the run."""
    config = tmp_path / "lab.toml"
    config.write_text(
        f'[session]\nroot = "rec"\n[markers]\nname = "M_{os.getpid()}_remote"\n'
        "sync_every_s = 0.5\n"
    )
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "record", "--config", str(config), "--control-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_line(proc, "remote control on")
        time.sleep(2.0)  # record a little
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            reader = sock.makefile("rb")
            sock.sendall(b"status\n")
            status = json.loads(reader.readline())
            assert status["state"] == "recording"
            assert status["recorder"]["streams"]
            sock.sendall(b"start\n")  # not applicable: acknowledged, logged
            assert sock.recv(2) == b"OK"
            sock.sendall(b"stop\n")
            assert sock.recv(2) == b"OK"
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "remote start ignored" in err
    folder = Path(out.strip().splitlines()[-1])
    meta = json.loads((folder / "session_metadata.json").read_text())
    assert meta["status"] == "completed"
    streams, _ = pyxdf.load_xdf(str(folder / f"{folder.name}.xdf"))
    markers = next(
        s for s in streams if s["info"]["name"][0] == f"M_{os.getpid()}_remote"
    )
    assert len(markers["time_stamps"]) >= 2  # sync pulses every 0.5 s until the stop
